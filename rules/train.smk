# rule(s) for the train stage: see README "Stages".
