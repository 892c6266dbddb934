"""One workflow per verb's job, each over one `Run` (context.py) built once per command."""
