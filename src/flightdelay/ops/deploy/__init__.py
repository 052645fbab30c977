"""Blue-green deployment on one machine: ``flightdelay deploy``, ``flightdelay rollback``.

Each environment of ``deploy/environments.yaml`` is a real nginx (``router``) on a loopback port
in front of two colours, each a ``bentoml serve`` of a Bento (``colour``). A deploy
(``rollout``) starts the idle colour, waits for ``/readyz``, smoke-tests it directly against the
Pipeline inside its model (``smoke``), shifts traffic to it in weighted steps with graceful
reloads, watches the new colour's error rate and p99 in nginx's access log (``watch``), and
rolls back by itself when the window fails. ``state`` keeps one atomically written file per
environment with every deploy's record; ``config`` reads the environments.
"""
