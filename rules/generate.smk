# rule(s) for the generate stage: see README "Stages".
