"""Palm-pay's keys at start-up: every secret from the key provider, and a refusal when data needs a key
that is not there (never a silent new key).

* Data keys and the blind-index root: the keyring (crypto.py) over the provider's `palmpay-data` /
  `palmpay-index-root`. The database records the id of the index root its blind indexes were written
  under: another root would make every palm and proxy unfindable (NOT_REGISTERED for every link).
* Blind-index roots rotate (reindexing.py): the database records the current root and, during a
  rotation, the previous one; lookups try both until the settlement rounds have re-indexed every row
  and the backup window has passed. Every version any provider holds is a candidate (`IndexRoots`); a
  process that lacks a recorded one refuses to start, and a running one that meets a root it lacks
  (another process rotated) re-reads the providers, then refuses the operation.
* The OTP MAC key: `palmpay-otp-mac` from the provider (created in the key folder on a first run). The
  database records its id; a process whose provider does not hold that version refuses to start: its
  codes would not verify elsewhere, nor the others' here (servers sharing one PostgreSQL database share
  the key: one key folder, PAYOPS_KEY_PALMPAY_OTP_MAC or the key command). Codes
  sent before the provider held one (MACed under a key derived from the index root) still match until
  the first start that records an id; they live 10 minutes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from payops.storage.keys import PALMPAY_INDEX_ROOT, PALMPAY_OTP_MAC, KeyChain, KeyProblem, KeySet, key_id_for

from .crypto import BlindIndex, KeyRing, KeyRingError, OtpHasher, legacy_otp_key
from .options import PalmPayOptions
from .store import PalmPayStore, PostgresPalmPayStore


class IndexRoots:
    """Blind-index roots by id (the keyring's own, and every version a provider holds); the database says
    which one is current and which is being rotated out."""

    def __init__(self, chain: KeyChain, ring_root: bytes) -> None:
        self._chain = chain
        self._ring_root = ring_root
        self._lock = threading.Lock()
        self._indexes: dict[str, BlindIndex] = {}
        self._roots: dict[str, bytes] = {}
        self.reload()

    def reload(self) -> None:
        """Ask every provider again (another process may have added a version)."""
        roots = {key_id_for(PALMPAY_INDEX_ROOT, self._ring_root): self._ring_root}
        for provider in self._chain.providers:
            try:
                found = provider.load(PALMPAY_INDEX_ROOT)
            except KeyProblem as exc:
                raise KeyRingError(str(exc)) from None
            if found is not None:
                roots.update(found.versions)
        with self._lock:
            self._roots = roots

    def __contains__(self, root_id: object) -> bool:
        with self._lock:
            return root_id in self._roots

    def index(self, root_id: str) -> BlindIndex:
        """The blind index under `root_id`; KeyRingError (no key material) when no provider holds it."""
        with self._lock:
            found = self._indexes.get(root_id)
        if found is not None:
            return found
        if root_id not in self:
            self.reload()
        with self._lock:
            root = self._roots.get(root_id)
            if root is None:
                raise KeyRingError(f"the blind indexes use index root {root_id}, which {self._chain.description} "
                                   f"does not hold; give this process that '{PALMPAY_INDEX_ROOT}' version")
            return self._indexes.setdefault(root_id, BlindIndex(root))

    def add_version(self, current_id: str) -> str:
        """Rotation: a new root version in the key folder (every old version is kept); its id. A current root
        no provider holds (the keyring's, or one derived from the data key) is written there first: once the
        new root is the provider's active one, nothing else would give it to the next process."""
        store = self._chain.store
        if store is None:
            raise KeyRingError(f"no key folder to add a '{PALMPAY_INDEX_ROOT}' version to; add one to the key "
                               "provider and rotate there")
        try:
            held = any((found := p.load(PALMPAY_INDEX_ROOT)) is not None and current_id in found.versions
                       for p in self._chain.providers)
            if not held:
                self.index(current_id)  # KeyRingError if this process does not hold it either
                with self._lock:
                    material = self._roots[current_id]
                store.add_version(PALMPAY_INDEX_ROOT, material=material)
            added = store.add_version(PALMPAY_INDEX_ROOT)
        except KeyProblem as exc:
            raise KeyRingError(str(exc)) from None
        self.reload()
        return added.active


@dataclass(frozen=True)
class ServiceKeys:
    ring: KeyRing
    otp: OtpHasher
    roots: IndexRoots


def load_service_keys(store: PalmPayStore | PostgresPalmPayStore, options: PalmPayOptions,
                      chain: KeyChain) -> ServiceKeys:
    """The keyring and OTP hasher; KeyRingError (one line, no key material) when data needs a missing key."""
    with store.read() as tx:
        sealed_under = tx.active_key_id()  # data exists: its key must too
        index_id, otp_id = tx.key_ids()
    ring = KeyRing.load(options.state_dir, options.data_key, expect_key_id=sealed_under, key_dir=options.key_dir,
                        command=options.key_command, provider=chain)
    index_now = key_id_for(PALMPAY_INDEX_ROOT, ring.index_root)
    roots = IndexRoots(chain, ring.index_root)
    with store.read() as tx:
        previous = tx.rotation_state().index_prev_key_id
    for recorded in (index_id, previous):
        if recorded is not None and recorded not in roots:
            raise KeyRingError(
                f"refusing to start: palm-pay's blind indexes were written under index root {recorded}, which the "
                f"configured keys do not hold; restore that '{PALMPAY_INDEX_ROOT}' key (another would make every "
                "palm unfindable)")
    otp_keys = _otp_keys(chain, otp_id)
    older = [key for kid, key in otp_keys.versions.items() if kid != otp_keys.active]
    if otp_id is None:
        older.append(legacy_otp_key(ring.index_root))  # codes sent by a version that derived the key
    with store.write() as tx:
        if tx.active_key_id() is None:
            tx.set_active_key_id(ring.active_id)
        tx.set_key_ids(index_key_id=index_now, otp_key_id=otp_keys.active)
    return ServiceKeys(ring, OtpHasher(otp_keys.active_key, older), roots)


def _otp_keys(chain: KeyChain, recorded: str | None) -> KeySet:
    try:
        found = chain.obtain(PALMPAY_OTP_MAC, data_exists=recorded is not None, what="palm-pay's OTP codes")
    except KeyProblem as exc:
        raise KeyRingError(str(exc)) from None
    if recorded is not None and recorded not in found.versions:
        raise KeyRingError(
            f"refusing to start: palm-pay's OTP codes are MACed under key {recorded}, which {chain.description} does "
            f"not hold; restore that '{PALMPAY_OTP_MAC}' version, or give every server the same one")
    return found
