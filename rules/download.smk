# rule(s) for the download stage: see README "Stages".
