"""The embedded AWS: moto in server mode, made real where moto fakes what the cycle needs.

Laid out by service, as moto is; ``server`` starts moto and installs each service's patches, whose state
lives on the running :class:`mlcycle.local.context.LocalContext`:

* ``awslambda``: handlers run in this process (every invocation path), asynchronous invocations queued;
* ``events``: EventBridge delivery to Lambda, Step Functions and SNS (``delivery``), schedule expressions
  (``cron``), and the ticker that fires schedules and runs other periodic work (``schedules``);
* ``sagemaker``: training and processing jobs as local processes (``training``, ``processing``,
  ``jobs``), endpoints served by live model servers (``endpoints``, ``servers``, ``invocations``,
  ``capture``), registry approval events (``registry_events``);
* ``cloudwatch``: alarms evaluated on the ticker (``alarms``);
* ``s3``: bucket policies (``policies``) and notification records as AWS writes them (``notifications``);
* ``stepfunctions``: executions named as AWS names them;
* ``cloudformation``: the synthesized template provisioned resource by resource;
* ``common``: helpers the services share (S3 and tar files, job processes, moto's conventions);
* ``session`` (an embedded AWS with the platform provisioned) and ``daemon`` (``mlcycle local``).
"""
