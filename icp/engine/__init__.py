"""The engine's state machine, split by concern (docs/architecture.md, "The engine's state machine"):

- `table`: states, steps, deadlines, the transition table (the machine), legal events per state;
- `settings`: `EngineSettings`, `AutoResume` and the records of work in progress;
- `core`: the session's fields and shared helpers (emit, step, generations, snapshot);
- `pipeline`: segments, synthesis, flow control, stopping a voice, lost-audio recovery;
- `apply`: dispositions; `speech`: the user talking and the classifier's answer;
- `session`: `Session.handle()`, dispatch by event type, deadlines, restore.

Import from `icp.machine` (the stable name) or from the modules here; this package imports nothing
on its own so that the modules can import each other without cycles.
"""
