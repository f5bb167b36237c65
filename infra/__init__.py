"""The CDK app of mlcycle: one construct per stage of the ML cycle, composed by infra.stack."""
