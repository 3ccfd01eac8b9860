"""CPU per `Renderer.render`: the sample event in every template and locale, before vs after.

    .venv/bin/python -m benchmarks.render                  # this tree vs the base commit
    .venv/bin/python -m benchmarks.render --baseline HEAD~1 -n 300 --repeats 7
    .venv/bin/python -m benchmarks.render --baseline ''    # this tree only

The baseline is `src/cancelnotify/mail/render.py` as of a git revision, loaded beside the current
one (the rest of the package is shared), so both run in one process on the same data: the
machine is shared and noisy, compare only within one run. Variants alternate within each repeat;
the figure is the median over the repeats of ms per render. Start-up (building the Renderer) and
compiling every language (`compile_all`, what `serve` does at start-up) are timed too. Every
variant's subject and text must equal the current one's byte for byte, and its HTML must be the
same document (`inline.document_difference`: parsed, attributes in any order; CSS inlined as the
templates compile writes no tbody and keeps attribute order and entities as written).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path
from typing import Any

from cancelnotify.mail import render as current
from cancelnotify.mail.inline import document_difference
from cancelnotify.samples import sample_event
from cancelnotify.schemas.event import CancellationEventV1
from cancelnotify.settings import Settings

REPO = Path(__file__).resolve().parents[1]
BASE_COMMIT = "c8dffc4"
NOTIFICATION_ID = uuid.UUID("8b0e6f4c-2a71-4d0e-9a53-0c1d2e3f4a5b")


def load_baseline(revision: str) -> types.ModuleType:
    """render.py at `revision` as a module of its own, importing the current package."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/cancelnotify/mail/render.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"baseline_render_{revision}")
    module.__file__ = str(REPO / "src/cancelnotify/mail/render.py")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def build(module: types.ModuleType, settings: Settings) -> tuple[Any, float]:
    start = time.perf_counter()
    renderer = module.Renderer(settings)
    return renderer, (time.perf_counter() - start) * 1000


def render(renderer: Any, event: CancellationEventV1, template: str, locale: str) -> Any:
    return renderer.render(
        event,
        notification_id=NOTIFICATION_ID,
        reference="CN-7F3K2Q",
        template=template,
        locale=locale,
    )


def per_render_ms(
    renderer: Any, event: CancellationEventV1, template: str, locale: str, n: int
) -> float:
    start = time.process_time()
    for _ in range(n):
        render(renderer, event, template, locale)
    return (time.process_time() - start) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=200, help="renders per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default=BASE_COMMIT, help="git revision ('' for none)")
    args = parser.parse_args()

    settings = Settings(_env_file=None)
    event = CancellationEventV1.model_validate(sample_event())
    modules = {"after": current}
    if args.baseline:
        modules = {"before": load_baseline(args.baseline), **modules}
    renderers: dict[str, Any] = {}
    startup: dict[str, list[float]] = {name: [] for name in modules}
    warm: dict[str, list[float]] = {name: [] for name in modules}
    compile_all: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(3):
        for name, module in modules.items():
            renderers[name], ms = build(module, settings)
            startup[name].append(ms)
            start = time.perf_counter()  # languages may compile on their first email
            for locale in renderers[name].locales():
                render(renderers[name], event, "order_cancelled", locale)
            warm[name].append(ms + (time.perf_counter() - start) * 1000)
            fresh, ms = build(module, settings)
            if hasattr(fresh, "compile_all"):
                start = time.perf_counter()
                fresh.compile_all()
                compile_all[name].append(ms + (time.perf_counter() - start) * 1000)

    now = renderers["after"]
    cases = [(t, loc) for t in now.templates() for loc in now.locales()]
    for template, locale in cases:  # the same email, or the comparison means nothing
        want = render(now, event, template, locale)
        for name, renderer in renderers.items():
            got = render(renderer, event, template, locale)
            assert (got.subject, got.text) == (want.subject, want.text), (
                f"{name} differs for {template}/{locale}"
            )
            difference = document_difference(got.html, want.html)
            assert difference is None, f"{name} HTML differs for {template}/{locale}: {difference}"

    samples: dict[tuple[str, str, str], list[float]] = {}
    gc.disable()  # collections land on random renders; keep them out of the comparison
    try:
        for _ in range(args.repeats):
            for template, locale in cases:
                for name, renderer in renderers.items():
                    ms = per_render_ms(renderer, event, template, locale, args.n)
                    samples.setdefault((name, template, locale), []).append(ms)
                gc.collect()
    finally:
        gc.enable()

    names = list(renderers)
    print(f"ms per render (CPU, median of {args.repeats} x {args.n})")
    print(f"{'template':<18} {'locale':<6} " + " ".join(f"{n:>8}" for n in names), end="")
    print("   change" if len(names) == 2 else "")
    totals = dict.fromkeys(names, 0.0)
    for template, locale in cases:
        row = {n: statistics.median(samples[(n, template, locale)]) for n in names}
        for n in names:
            totals[n] += row[n]
        line = f"{template:<18} {locale:<6} " + " ".join(f"{row[n]:8.3f}" for n in names)
        if len(names) == 2:
            line += f"  {row[names[1]] / row[names[0]] - 1:+7.0%}"
        print(line)
    mean = {n: totals[n] / len(cases) for n in names}
    line = f"{'mean':<25} " + " ".join(f"{mean[n]:8.3f}" for n in names)
    if len(names) == 2:
        line += f"  {mean[names[1]] / mean[names[0]] - 1:+7.0%}"
    print(line)
    print(
        "start-up ms (Renderer(), median of 3): "
        + ", ".join(f"{n} {statistics.median(startup[n]):.0f}" for n in names)
    )
    print(
        "start-up + first email in every language, ms: "
        + ", ".join(f"{n} {statistics.median(warm[n]):.0f}" for n in names)
    )
    print(
        "start-up + compile_all (every language), ms: "
        + ", ".join(f"{n} {statistics.median(compile_all[n]):.0f}" for n in names if compile_all[n])
    )


if __name__ == "__main__":
    main()
