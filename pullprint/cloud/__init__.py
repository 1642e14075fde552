"""pullprint.cloud: the release service (docs/api.md).

``app.create_app(config)`` builds the FastAPI app, ``server.run(config)`` serves it and
``python -m pullprint.cloud --config PATH`` runs it. Inside: ``db`` (tables, migrations),
``auth`` (bearer tokens), ``validate`` (input limits), ``jobs`` (the job life cycle),
``ledger`` (money), ``events`` and ``notify`` (the node long-poll), ``storage`` (documents),
``users`` and ``printers``.
"""
