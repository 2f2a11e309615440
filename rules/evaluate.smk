# rule(s) for the evaluate stage: see README "Stages".
