# rule(s) for the tokenize stage: see README "Stages".
