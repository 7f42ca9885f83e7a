"""`segue-demo`: watch segue keep track of what was heard through an interruption and a go-back.

This version drives the ICP core through a scripted conversation in a simulated world (scripted LLM,
fixed-rate speech, a device playing in order). It prints what was generated, what was heard, each
interruption with its disposition, the resume point, and the conversation tree.
"""

from __future__ import annotations

import argparse
import sys

from evaluation.coresim import Sim
from icp import commands as C
from icp.conversation import AssistantItem, UserTurn
from icp.dispositions import Classification, ClassifyRequest, Disposition

EXPLANATION = (
    "Transformers are neural networks that read a whole sentence at once. They turn every word into "
    "a vector, and then attention lets each word look at every other word to decide what matters. "
    "After attention, small feed forward layers refine each position. Many such layers are stacked, "
    "so the model builds up meaning step by step. Training needs a lot of text and a lot of patience."
)
SIDE = "Attention is a weighted average: each word scores the others and mixes in what scores highest."


def _classify(req: ClassifyRequest) -> Classification:
    try:
        from icp.classifier import default_classifier  # type: ignore[attr-defined]

        return default_classifier().classify(req)
    except ImportError:
        text = req.utterance.lower()
        if "go back" in text:
            return Classification(Disposition.RESUME, 0.9)
        return Classification(Disposition.BRANCH if req.speaking else Disposition.NEW, 0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segue-demo",
        description="Run segue's offline demo: ask for an explanation, interrupt with a side question, "
        "say 'okay, go back', and see what was generated, what was heard, and where it resumed.",
    )
    parser.add_argument("--interrupt-after-s", type=float, default=6.0,
                        help="seconds of the explanation heard before the side question (default 6)")
    args = parser.parse_args(argv)

    sim = Sim({"transformers": EXPLANATION, "attention": SIDE}, _classify)
    shown = 0

    def show() -> None:
        nonlocal shown
        for cmd in sim.log[shown:]:
            if isinstance(cmd, C.Transition):
                print(f"  [{sim.now:6.2f}s] engine {cmd.before} -> {cmd.after}")
            elif isinstance(cmd, C.DispositionApplied):
                print(f"  [{sim.now:6.2f}s] '{cmd.text}' -> {cmd.applied.value} ({cmd.source}, {cmd.confidence:.2f})")
            elif isinstance(cmd, C.ResumePlanned):
                item = sim.session.conv.item(cmd.item_id)
                print(f"  [{sim.now:6.2f}s] resume at word {cmd.resume_word}: "
                      f"'{' '.join(item.words[cmd.resume_word:cmd.resume_word + 6])} ...'")
            elif isinstance(cmd, C.SendSegment):
                print(f"  [{sim.now:6.2f}s] speak: {cmd.segment.text}")
        shown = len(sim.log)

    print("user: Explain how transformers work.")
    sim.say("Explain how transformers work.")
    sim.run_until(lambda: (show(), sim.now >= args.interrupt_after_s)[1])
    show()
    print("user (interrupting): Wait, what's attention?")
    sim.say("wait what's attention")
    sim.run_until(lambda: (show(), sim.idle())[1])
    show()
    print("user: Okay, go back.")
    sim.say("okay go back")
    sim.run_until(lambda: (show(), sim.idle())[1])
    show()

    print("\nThe conversation, generated vs heard:")
    for entry in sim.session.conv.log:
        if isinstance(entry, UserTurn):
            print(f"  {entry.thread:>4} user:      {entry.text}")
        elif isinstance(entry, AssistantItem):
            heard = " ".join(entry.words[: entry.heard])
            print(f"  {entry.thread:>4} assistant: heard {entry.heard}/{len(entry.words)} words: {heard}")
    print("\nThreads:")
    for t in sim.session.conv.threads.values():
        print(f"  {t.id}: {t.status.value}" + (f" (child of {t.parent})" if t.parent else ""))
    print(f"\nLLM requests: {len(sim.llm_requests)}; the last one's assistant turns hold only heard words.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
