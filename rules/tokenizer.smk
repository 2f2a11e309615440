# rule(s) for the tokenizer stage: see README "Stages".
