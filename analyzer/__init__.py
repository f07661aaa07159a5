"""bundle-analyzer: why is Azure Migrate agentless replication of VMware VMs failing?"""

__version__ = "0.1.0"
