# rule(s) for the extract stage: see README "Stages".
