"""LightThinker-style gist compression: layout, special tokens, the attention rule and its fast paths.

    config.py      GistConfig (modes, level, n cache tokens, flags) and the shipped presets
    tokens.py      add the special tokens to a tokenizer, resize/initialise the model's embeddings
    layout.py      record -> GistSample (ids, labels, positions, role/seg/doc/expire metadata)
    rule.py        the attention rule, once, as a dense reference (single source of truth)
    mask_mod.py    the rule as a FlexAttention mask_mod
    block_mask.py  the rule as a FlexAttention BlockMask built from the metadata
    packing.py     several samples per row
    reorder.py     a row stored physically as [prompt | cache tokens | thoughts], masked by logical position

Submodules are imported explicitly (this file imports nothing, so `thinkc.gist.rule` stays light)."""
