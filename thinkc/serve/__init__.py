"""`thinkc serve`: an OpenAI-compatible server over the live decode engine (thinkc.infer.live).

app (routes, errors) · protocol (request models, response bodies, OpenAI errors) · service (prompts,
limits, events) · driver (the engine thread) · reasoning (detokenisation, stop strings, the
thinking / answer split) · metrics (Prometheus) · server (loading and uvicorn) · docs/serving.md."""
