"""What the generator knows of CATALOGUE.md: error ids, their causes, and how each error shows.

The ids are the catalogue's contract. `ERROR_IDS` is parts A+B+C; a test checks it against a copy
of the catalogue's list, and `scenarios.py` derives one scenario per (error, cause) from `ERRORS`.
Texts of part A are the catalogue's; part B portal texts are written here (the catalogue gives
only code and name), always naming the VM and, where it fits, the disk.
"""

from __future__ import annotations

from dataclasses import dataclass

# Gateway states in cycle order (FORMATS.md section 1).
QUEUED = "Queued"
CREATING = "CreatingSnapshot"
DISPOSAL = "WaitingForArtefactsDisposalPreCycle"
QUERYING = "QueryingChangedBlocks"
UPLOADING = "UploadingDisks"
RELEASING = "ReleasingSnapshot"
CONSOLIDATING = "ConsolidatingDisks"
STATES = (QUEUED, CREATING, DISPOSAL, QUERYING, UPLOADING, RELEASING, CONSOLIDATING)

APPLIANCE_CAUSES = ("appliance_down", "gateway_service_down", "gateway_storage_unreachable",
                    "service_bus_unreachable", "event_hub_unreachable", "key_vault_unreachable")

UNDETERMINED = "undetermined"

# Errors raised before the appliance asks vCenter for a snapshot: no createSnapshot task for them.
BEFORE_VCENTER = ("resync_snapshot_missing", "rdm_physical_mode_disk", "protection_readiness_snapshots_present")


@dataclass(frozen=True)
class ErrorSpec:
    id: str
    causes: tuple[str, ...]  # catalogue causes, `undetermined` excluded
    code: str | None = None  # portal Error ID
    token: str = "InternalError"  # gateway `error=` token
    state: str = UPLOADING  # where the cycle fails
    text: str = ""  # gateway/portal error text; {vm} {vm_id} {disk} {disk_id} {host} {reason} {snap_guid}
    vmware: str | None = None  # the VMware text the gateway wraps (internal errors)
    fallback: str | None = None
    disk_event: bool = False  # portal event "Replication cycle failed for disk"
    part: str = "A"

    def no_evidence_cause(self, vddk_rules_out: bool = False) -> str:
        """CATALOGUE decision rule (2): the cause chosen when no cause has evidence."""
        if self.fallback:
            return self.fallback
        if len(self.causes) == 1 and not (vddk_rules_out and self.causes[0] == "vddk_known_issue"):
            return self.causes[0]
        return UNDETERMINED


def _internal(vmware_text: str) -> str:
    return f"An internal error occurred. [{vmware_text}]"


_TIMEOUT_CAUSES = APPLIANCE_CAUSES
_UPLOAD_CAUSES = ("appliance_down", "gateway_service_down", "cache_storage_unreachable",
                  "service_bus_unreachable", "event_hub_unreachable", "key_vault_unreachable",
                  "vcenter_read_throttled")

_SPECS = [
    # --- part A
    ErrorSpec("key_vault_operation_failed", ("csp_remote_user", "access_policy_missing_for_user"),
              token="KeyVaultOperationFailed", state=QUEUED,
              text=("Key Vault operation failed. Operation: Generate shared access signature definition, "
                    "Key Vault: {kv}, Storage Account: {sa} failed with the error: The user or application "
                    "does not have the storage permission 'setsas' on the key vault.")),
    ErrorSpec("dispose_artefacts_timed_out", _TIMEOUT_CAUSES, code="181008", token="DisposeArtefactsTimedOut",
              state=DISPOSAL,
              text=("VM: {vm}. Error: Encountered timeout event 'DisposeArtefactsTimeout' in the state "
                    "'[SnapshotReplication.SnapshotReplicationEngine+WaitingForArtefactsDisposalPreCycle "
                    "('WaitingForArtefactsDisposalPreCycle')]'.")),
    ErrorSpec("disk_upload_timed_out", _UPLOAD_CAUSES, code="1011", token="DiskUploadTimedOut",
              state=UPLOADING, disk_event=True,
              text=("The upload of data for disk {disk}, {disk_id} of virtual machine {vm}; {vm_id} "
                    "did not complete within the expected time.")),
    ErrorSpec("changed_blocks_fetch_failed", ("cbt_reset_by_storage_vmotion", "cbt_reset_or_corrupt"),
              fallback="cbt_reset_or_corrupt", token="ChangedBlocksFetchFailed", state=QUERYING,
              disk_event=True,
              text="Encountered an error while trying to fetch changed blocks for disk {disk} of virtual machine {vm}."),
    ErrorSpec("internal_server_refused_connection", ("vddk_known_issue",), state=UPLOADING, disk_event=True,
              vmware="Server Refused Connection"),
    ErrorSpec("internal_invalid_snapshot_configuration", ("disk_removed_from_vm",), state=CREATING,
              vmware="An Invalid snapshot configuration was detected."),
    ErrorSpec("internal_generate_snapshot_hung", ("snapshot_creation_stuck",), state=CREATING,
              vmware="Generate Snapshot Hung"),
    ErrorSpec("internal_consolidate_disks_failed", ("disk_locked", "consolidation_failed"),
              fallback="consolidation_failed", state=CONSOLIDATING,
              vmware="Failed to consolidate the disks on VM {vm}: {reason}"),
    ErrorSpec("internal_another_task_in_progress", ("conflicting_vcenter_task", "vcenter_task_timeout"),
              state=CREATING, vmware="Another task is already in progress"),
    ErrorSpec("internal_operation_not_allowed", ("host_management_agent_down",), state=CREATING,
              vmware="Operation not allowed in current state"),
    ErrorSpec("internal_snapshot_disk_size_invalid", ("snapshot_disk_size_zero",), state=UPLOADING,
              disk_event=True, vmware="Snapshot Disk size invalid"),
    ErrorSpec("internal_memory_allocation_failed", ("nfc_buffer_exhausted",), state=UPLOADING,
              disk_event=True, vmware="Memory allocation failed. Out of memory."),
    # --- part B
    ErrorSpec("no_disk_snapshots_found", ("disk_path_changed_by_storage_vmotion", "disk_detached"),
              code="181008", token="NoDiskSnapshotsFound", state=QUERYING, part="B",
              text="No disksnapshots were found for the snapshot replication with snapshot ID: '{snap_guid}'"),
    ErrorSpec("internal_file_larger_than_max", ("snapshot_file_too_large",), state=CREATING, part="B",
              vmware="File is larger than maximum file size supported (1012384)"),
    ErrorSpec("internal_cannot_connect_to_host", ("esxi_host_network_unreachable",), state=UPLOADING,
              disk_event=True, part="B", vmware="Cannot connect to the host (1004109)"),
    ErrorSpec("invalid_change_tracker", ("datastore_problem",), token="InvalidChangeTracker", state=CREATING,
              part="B", text="An error occurred while saving the snapshot: Invalid change tracker error code"),
    ErrorSpec("unable_to_open_snapshot_file", ("datastore_out_of_space",), token="SnapshotFileOpenFailed",
              state=CREATING, part="B",
              text="An error occurred while taking a snapshot: Unable to open the snapshot file."),
    ErrorSpec("host_connection_refused", ("esxi_hostname_unresolvable", "port_902_blocked"), code="1022",
              token="HostConnectionRefused", state=UPLOADING, disk_event=True, part="B",
              text="The Azure Migrate appliance is unable to connect to the vSphere host '{host}'."),
    ErrorSpec("protection_readiness_snapshots_present", ("existing_snapshots_block_cbt",), code="31453",
              token="ProtectionReadinessCheckFailed", state=QUEUED, part="B",
              text=("Cannot replicate this virtual machine with current VMware configuration. "
                    "Virtual machine {vm} has snapshots that were taken before replication was enabled.")),
    ErrorSpec("storage_account_not_found", ("storage_account_moved_or_deleted",), code="542",
              token="StorageAccountNotFound", state=UPLOADING, part="B",
              text="The storage account {sa} used to replicate virtual machine {vm} was not found."),
    ErrorSpec("state_container_not_found", ("replication_disabled",), code="587", token="StateContainerNotFound",
              state=DISPOSAL, part="B",
              text="The replication state of virtual machine {vm} was not found in the migration service."),
    ErrorSpec("subscription_snapshot_throttled", ("subscription_snapshot_rate_limit",), code="633",
              token="SubscriptionSnapshotOperationThrottled", state=CONSOLIDATING, part="B",
              text="Snapshot operations for the replica disks of virtual machine {vm} were throttled in the subscription."),
    ErrorSpec("resync_snapshot_missing", ("resync_snapshot_deleted",), code="508",
              token="ResyncSnapshotDoesNotExist", state=CREATING, part="B",
              text="The snapshot needed to resynchronize virtual machine {vm} does not exist."),
    ErrorSpec("insufficient_key_vault_permissions", ("key_vault_permissions_removed",), code="1039",
              token="InsufficientPermissionsOnKeyVault", state=UPLOADING, part="B",
              text="The appliance lacks the permissions it needs on Key Vault {kv} to replicate virtual machine {vm}."),
    ErrorSpec("disk_change_id_unavailable", ("cbt_disabled_or_independent_disk",), code="563",
              token="DiskSnapshotChangeIdIsNotAvailable", state=QUERYING, disk_event=True, part="B",
              text="The change ID of the snapshot of disk {disk} of virtual machine {vm} is not available."),
    ErrorSpec("rdm_physical_mode_disk", ("physical_mode_rdm",), code="1023",
              token="SnapshotDiskAttachedInPhysicalMode", state=CREATING, disk_event=True, part="B",
              text=("Disk {disk} of virtual machine {vm} is a raw device mapping in physical compatibility "
                    "mode and cannot be snapshotted.")),
    ErrorSpec("disk_download_timed_out", ("download_service_degraded",), code="1012", token="DiskDownloadTimeout",
              state=UPLOADING, disk_event=True, part="B",
              text="The download of data for disk {disk} of virtual machine {vm} did not complete within the expected time."),
    ErrorSpec("component_timed_out", _TIMEOUT_CAUSES, code="1003", token="SnapshotReplicationComponentTimeOut",
              state=QUERYING, part="B",
              text="A replication component for virtual machine {vm} did not respond within the expected time."),
    ErrorSpec("change_tracking_reset", ("cbt_reset_by_storage_vmotion", "cbt_reset_or_corrupt"), code="1018",
              token="ChangeBlockTrackingReset", state=QUERYING, disk_event=True, part="B",
              text="Changed block tracking was reset for disk {disk} of virtual machine {vm}."),
    ErrorSpec("vmware_generic_failure", ("vmware_operation_failed",), code="1028", token="VMwareGenericFailure",
              state=CREATING, part="B",
              text="The VMware operation for virtual machine {vm} failed with the error '{reason}'."),
    # --- part C: no error event; found from timings
    ErrorSpec("replication_stalled", (), state=UPLOADING, part="C"),
    ErrorSpec("slow_replication", ("nfc_buffer_exhausted", "vcenter_read_throttled", "appliance_overloaded"),
              state=UPLOADING, part="C"),
]

ERRORS: dict[str, ErrorSpec] = {spec.id: spec for spec in _SPECS}
ERROR_IDS: frozenset[str] = frozenset(ERRORS)


def error_text(spec: ErrorSpec, **values: str) -> str:
    """The portal/gateway text of an error, with the VM, disk and so on filled in."""
    if spec.vmware is not None:
        return _internal(spec.vmware.format(**values))
    return spec.text.format(**values)


# Portal "Possible causes" / "Recommendation" columns, short and in our own words.
POSSIBLE_CAUSES = {
    "181008": "The appliance could not finish cleaning up the previous cycle in time.",
    "1011": "The appliance could not reach Azure, or it read the disk too slowly.",
    "1003": "A replication component on the appliance stopped responding.",
}
RECOMMENDATION = "Check that the appliance and its gateway service run and can reach Azure, then retry."
