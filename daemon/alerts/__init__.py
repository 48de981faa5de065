"""Alerts: tell someone when runs fail, records pile up in the dead letter, or FreeAgent wants
the client re-authorised.

    runner ── run_finished ──┐                      ┌─ critical: a message at once
    reauth scan (each tick) ─┴─ raise (dedup, SQL) ─┤
                                                    └─ warning: waits for the summary
    dispatcher tick: summary when due ── claim due messages ── channels (webhook, e-mail)

All state (alerts, quiet periods, messages, the summary's due time) lives in PostgreSQL, so
replicas sharing a database raise each condition once and send each message once.
"""
