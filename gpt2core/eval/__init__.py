"""Evaluation: WikiText-103 perplexity as the reference computes it, LAMBADA, decontamination titles,
and the results table for the workflow's report. One module a job; nothing here imports the workflow."""
