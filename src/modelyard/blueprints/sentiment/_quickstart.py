"""``modelyard quickstart --blueprint sentiment``: the baseline, trained and registered."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.blueprints import QuickstartResult
from modelyard.blueprints.sentiment._baseline import train_baseline
from modelyard.blueprints.sentiment._config import settings_of
from modelyard.blueprints.sentiment._data import Corpus, load_corpus

if TYPE_CHECKING:
    from rich.progress import Progress

    from modelyard.workspace import Workspace

ALIAS = "production"
EXAMPLE_CHARS = 200


def example_text(corpus: Corpus) -> str:
    """A real, short test text for the curl line (the first under 200 characters without
    a quote, which a shell line would have to escape)."""
    texts = corpus.test["text"]
    short = texts[(texts.str.len() <= EXAMPLE_CHARS) & ~texts.str.contains("'", regex=False)]
    return str(short.iloc[0] if len(short) else texts.iloc[0][:EXAMPLE_CHARS])


def quickstart(ws: Workspace, progress: Progress | None = None) -> QuickstartResult:
    """Load the corpus, train the baseline, register it as ``MODEL@production``."""

    def step(text: str) -> Any:
        return progress.add_task(text, total=1) if progress is not None else None

    def done(task: Any) -> None:
        if progress is not None:
            progress.update(task, completed=1)

    settings = settings_of(ws)
    task = step("loading the labelled texts")
    corpus = load_corpus(settings)
    done(task)
    task = step(f"training TF-IDF + logistic regression on {len(corpus.train)} texts")
    version = train_baseline(ws, settings, corpus, alias=ALIAS)
    done(task)
    m = version.metrics
    summary = (
        f"accuracy {m['accuracy']:.3f} on {len(corpus.test)} held-out texts "
        f"(always '{corpus.majority}': {m['majority_accuracy']:.3f}), "
        f"f1 {m['f1']:.3f}"
        + (f", roc_auc {m['roc_auc']:.3f}" if m.get("roc_auc") is not None else "")
        + f"; trained in {m['train_seconds']:.1f} s"
    )
    return QuickstartResult(
        model=settings.model_name,
        alias=ALIAS,
        version=version,
        run_id=version.run_id or "",
        summary=summary,
        example={"text": example_text(corpus)},
    )
