"""What a run did, shown on the node (progress text), sent to the front end and logged."""
from __future__ import annotations

import logging

log = logging.getLogger("DeepCache")
STATS_EVENT = "deepcache.stats"


def report_run(summary, spec, seconds: float, plan) -> None:
    text = f"{summary.text()}, sampling {seconds:.1f} s"
    log.info("%s", text)
    if spec.node_id is None:
        return
    try:
        from server import PromptServer
        server = PromptServer.instance
    except Exception:  # no server: library use, tests
        return
    try:
        server.send_progress_text(text, spec.node_id)
        server.send_sync(STATS_EVENT, {
            "node": str(spec.node_id),
            "full_steps": summary.full_steps,
            "cached_steps": summary.cached_steps,
            "full_evals": summary.full_evals,
            "cached_evals": summary.cached_evals,
            "estimated_speedup": summary.estimated_speedup,
            "seconds": round(seconds, 3),
            "plan": [k.value for k in plan],
            "disabled_reason": summary.disabled_reason,
        }, server.client_id)
    except Exception as e:  # reporting must never fail a run
        log.debug("DeepCache: could not send stats: %s", e)
