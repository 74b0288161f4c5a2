"""What a run did, shown on the node (progress text), sent to the front end and logged."""
from __future__ import annotations

import logging

log = logging.getLogger("DeepCache")
STATS_EVENT = "deepcache.stats"


def stats_payload(summary, node_id, seconds: float, plan) -> dict:
    measured = summary.measured
    return {
        "node": str(node_id),
        "full_steps": summary.full_steps,
        "cached_steps": summary.cached_steps,
        "full_calls": summary.full_calls,
        "cached_calls": summary.cached_calls,
        "extra_calls": summary.extra_calls,
        "speedup": summary.speedup,
        "saved_seconds": None if measured is None else round(measured.saved_seconds, 3),
        "unet_seconds": None if measured is None else round(measured.full_seconds + measured.cached_seconds, 3),
        "seconds": round(seconds, 3),
        "plan": [k.value for k in plan],
        "disabled_reason": summary.disabled_reason,
    }


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
        server.send_sync(STATS_EVENT, stats_payload(summary, spec.node_id, seconds, plan), server.client_id)
    except Exception as e:  # reporting must never fail a run
        log.debug("DeepCache: could not send stats: %s", e)
