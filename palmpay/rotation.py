"""Key rotation for PalmPayService: the data key and the blind-index root, each in three stages.

1. **Switch** (the approval of a two-person change request, change_requests.py): a new version becomes
   current and the database records it, so every process seals (or indexes) with it from its next
   transaction. Nothing is re-encrypted inside the approval: it returns at once.
2. **Catch up** (every settlement round, settlement.py: `payops palm maintain` and the background of
   `serve` / `run`): up to a batch of rows per round is re-encrypted under the active data key
   (`reencrypt_step`) or re-indexed under the current root (`reindex_step`: decrypt, recompute the
   digests). Each batch is one write transaction, so a crash loses nothing and the next round resumes;
   when no row is left, the database records the time.
3. **Retire** (a later round): only once the rows are done AND `options.key_backup_window_s` has passed
   since, so a backup taken before the rotation can still be restored and read within the window. Old
   data keys are then destroyed (crypto.py `KeyRing.retire`); lookups stop trying the previous root.

While a root rotation runs, lookups try the current and the previous root (service_core `_digests`).
"""

from __future__ import annotations

import logging

from .actors import BACKEND, authorisation_refusal
from .crypto import key_id_of
from .models import RotationReport
from .service_core import PROXY_FIELD, TEMPLATE_FIELD, ServiceCore, field_aad
from .store import Tx

log = logging.getLogger("payops.palmpay")

ROTATION_BATCH = 500  # rows per write transaction: a large table never holds the write lock for long


class RotationMixin(ServiceCore):
    """rotate_key / rotate_index_root (stage 1) and the settlement round's steps (stages 2 and 3)."""

    # --- data key ----------------------------------------------------------

    def rotate_key(self, *, actor: str = BACKEND, approved_by: str | None = None) -> RotationReport:
        """A new active data key; the settlement rounds re-encrypt the rows and, a backup window after
        that, retire the old keys. A human's rotation runs only as an approved change request."""
        why_not = authorisation_refusal("rotate_key", actor, approved_by)
        if why_not is not None:
            raise self._errors.make("PALM_PAY_NOT_AUTHORISED", detail=why_not)
        new_key = self._ring.add_active_key()
        with self.store.write() as tx:
            previous = tx.active_key_id()
            tx.set_active_key_id(new_key)  # from here on, every process seals with the new key
            tx.set_data_reencrypted_at(None)
            tx.audit(self._now(), palm_pay_id=None, actor=actor, action="rotate_key", from_status=None,
                     to_status=None, outcome="applied", reason=f"active key {new_key}; re-encryption scheduled"
                     + (f"; approved by {approved_by}" if approved_by else ""))
        return RotationReport(new_key_id=new_key, previous_key_id=previous)

    def reencrypt_step(self, *, batch: int = ROTATION_BATCH) -> int:
        """One round's share: up to `batch` rows not yet sealed under the active key are re-sealed (a rotation
        just approved, or one a crash interrupted). Returns how many; old keys stay readable."""
        with self.store.read() as tx:
            active = tx.active_key_id()
            if tx.rotation_state().data_reencrypted_at is not None:
                return 0  # no rotation pending (rotate_key clears it): no scan of the links every round
        if active is None or (self._ring.key(active) is None and (not self._ring.reload() or
                                                                  self._ring.key(active) is None)):
            return 0  # this process cannot seal under it yet; a process that can will
        done = self._reencrypt_batch(active, batch)
        with self.store.write() as tx:
            if done:
                tx.audit(self._now(), palm_pay_id=None, actor=BACKEND, action="reencrypt", from_status=None,
                         to_status=None, outcome="applied", reason=f"{done} rows re-encrypted under {active}")
            if done < batch and tx.rotation_state().data_reencrypted_at is None:
                tx.set_data_reencrypted_at(self._now())  # every row is under `active`: the window starts
        return done

    def retire_old_keys(self) -> tuple[str, ...]:
        """Destroy the data keys no row uses, once the rows were re-encrypted a backup window ago."""
        now = self._now()
        with self.store.read() as tx:
            state = tx.rotation_state()
            done_at = state.data_reencrypted_at
            if done_at is None or now - done_at < self.options.key_backup_window_s:
                return ()
            if not set(self._ring.key_ids()) - {state.active_key_id or self._ring.active_id}:
                return ()  # nothing left to retire: no scan of the links every round
            in_use = {key_id_of(ct) for row in tx.sealed_values() for ct in row[1:]}
        old = set(self._ring.key_ids()) - in_use - {state.active_key_id or self._ring.active_id}
        retired = tuple(sorted(self._ring.retire(old))) if old else ()
        if retired:
            self._cipher.forget_cached()
            with self.store.write() as tx:
                tx.audit(now, palm_pay_id=None, actor=BACKEND, action="retire_keys", from_status=None, to_status=None,
                         outcome="applied", reason=f"retired {', '.join(retired)} after the backup window")
            log.info("palm-pay data keys retired after the backup window: %s", ", ".join(retired))
        return retired

    def _reencrypt_batch(self, key_id: str, batch: int) -> int:
        """Re-seal up to `batch` rows not under `key_id` in one write transaction (access-logged); how many."""
        with self.store.write() as tx:
            todo = [
                row for row in tx.sealed_values() if key_id_of(row[1]) != key_id or key_id_of(row[2]) != key_id
            ][:batch]
            ts = self._now()
            for palm_pay_id, template_ct, proxy_ct in todo:
                template_aad, proxy_aad = field_aad(palm_pay_id, TEMPLATE_FIELD), field_aad(palm_pay_id, PROXY_FIELD)
                tx.set_ciphertexts(
                    palm_pay_id,
                    template_ct=self._cipher.seal(self._cipher.open(template_ct, template_aad), template_aad, key_id),
                    proxy_ct=self._cipher.seal(self._cipher.open(proxy_ct, proxy_aad), proxy_aad, key_id),
                )
                tx.log_access(ts, palm_pay_id, TEMPLATE_FIELD, "key_rotation", f"re-encrypt under {key_id}")
                tx.log_access(ts, palm_pay_id, PROXY_FIELD, "key_rotation", f"re-encrypt under {key_id}")
        return len(todo)

    # --- blind-index root ----------------------------------------------------

    def rotation_in_progress(self) -> str | None:
        """Why a new root rotation must wait (the previous one is not retired yet), or None."""
        with self.store.read() as tx:
            previous = tx.rotation_state().index_prev_key_id
        if previous is None:
            return None
        return (f"the blind-index root {previous} is still being rotated out (re-indexing, then the backup "
                "window); rotate again after it retires")

    def rotate_index_root(self, *, actor: str = BACKEND, approved_by: str | None = None) -> str:
        """A new blind-index root version (in the key folder) becomes current; the settlement rounds re-index
        the rows; lookups try both roots until the old one retires. Returns the new root's id."""
        why_not = authorisation_refusal("rotate_index_root", actor, approved_by)
        if why_not is not None:
            raise self._errors.make("PALM_PAY_NOT_AUTHORISED", detail=why_not)
        busy = self.rotation_in_progress()
        if busy is not None:
            raise self._invalid(busy)
        with self.store.read() as tx:
            current = tx.rotation_state().index_key_id
        if current is None:
            raise self._invalid("no blind-index root is recorded yet")
        new_root = self._roots.add_version(current)
        with self.store.write() as tx:
            state = tx.rotation_state()
            if state.index_prev_key_id is not None or state.index_key_id is None:  # another process just did
                raise self._invalid(self.rotation_in_progress() or "no blind-index root is recorded yet")
            tx.start_index_rotation(new_root, state.index_key_id)
            tx.audit(self._now(), palm_pay_id=None, actor=actor, action="rotate_index_root", from_status=None,
                     to_status=None, outcome="applied",
                     reason=f"index root {new_root} replaces {state.index_key_id}; re-indexing scheduled"
                     + (f"; approved by {approved_by}" if approved_by else ""))
        return new_root

    def reindex_step(self, *, batch: int = ROTATION_BATCH) -> int:
        """One round's share of a root rotation: up to `batch` rows re-indexed under the current root (the
        plaintext is decrypted, access-logged, to recompute the digests); then, once none is left and the
        backup window has passed, the previous root retires. Returns how many rows were re-indexed."""
        ts = self._now()
        with self.store.write() as tx:
            state = tx.rotation_state()
            current = state.index_key_id
            if current is None or state.index_prev_key_id is None:
                return 0
            todo = tx.indexed_under_other_roots(current, batch)
            for palm_pay_id, proxy_type, template_ct, proxy_ct in todo:
                self._reindex_row(tx, current, palm_pay_id, proxy_type, template_ct, proxy_ct, ts)
            if todo:
                tx.audit(ts, palm_pay_id=None, actor=BACKEND, action="reindex", from_status=None, to_status=None,
                         outcome="applied", reason=f"{len(todo)} rows re-indexed under index root {current}")
            done_at = state.index_reindexed_at
            if len(todo) < batch and done_at is None:
                tx.set_index_reindexed_at(ts)  # every row is under `current`: the backup window starts
            elif done_at is not None and ts - done_at >= self.options.key_backup_window_s:
                tx.retire_previous_index_root()
                tx.audit(ts, palm_pay_id=None, actor=BACKEND, action="retire_index_root", from_status=None,
                         to_status=None, outcome="applied",
                         reason=f"index root {state.index_prev_key_id} retired after the backup window")
        return len(todo)

    def _reindex_row(
        self, tx: Tx, root: str, palm_pay_id: str, proxy_type: str, template_ct: bytes, proxy_ct: bytes, ts: float
    ) -> None:
        if not template_ct:  # PII erased (retention.py): nothing to find it by
            tx.set_indexes(palm_pay_id, template_index=b"", proxy_index=b"", index_key_id=root)
            return
        index = self._roots.index(root)
        template_ref = self._cipher.open(template_ct, field_aad(palm_pay_id, TEMPLATE_FIELD))
        proxy = self._cipher.open(proxy_ct, field_aad(palm_pay_id, PROXY_FIELD))
        tx.log_access(ts, palm_pay_id, TEMPLATE_FIELD, "index_rotation", f"re-index under {root}")
        tx.log_access(ts, palm_pay_id, PROXY_FIELD, "index_rotation", f"re-index under {root}")
        tx.set_indexes(palm_pay_id, template_index=index.digest(TEMPLATE_FIELD, template_ref),
                       proxy_index=index.digest(PROXY_FIELD, f"{proxy_type}:{proxy}"), index_key_id=root)
