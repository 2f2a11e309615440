# rule(s) for the presplit stage: see README "Stages".
