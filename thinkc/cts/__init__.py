"""CTS: conditional token selection of reasoning traces (arXiv 2505.17827), design.md §5.

scorer.py scores thinking tokens (native: answer-conditional minus unconditional log-prob),
store.py persists per-token scores in resumable chunks, select.py keeps the best tokens at a ratio,
backends/ holds the scorers compared against (unconditional, LLMLingua, LLMLingua-2), and
pipeline.py runs score -> select per ratio -> write for `thinkc data cts`."""
