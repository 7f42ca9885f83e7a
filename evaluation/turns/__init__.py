"""`segue-bench turns`: the real-time turn-taking bench (see `evaluation.bench_turns`)."""
