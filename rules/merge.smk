# rule(s) for the merge stage: see README "Stages".
