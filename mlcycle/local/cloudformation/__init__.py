"""Provisioning a synthesized CDK template into the embedded AWS, as CloudFormation would: the template's
intrinsics (template), the walk in dependency order (provision), the provisioner's clients and names
(provisioner), and one creator per resource type (resources)."""

from mlcycle.local.cloudformation.provision import Stack, provision

__all__ = ["Stack", "provision"]
