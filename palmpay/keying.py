"""Palm-pay's keys at start-up: every secret from the key provider, and a refusal when data needs a key
that is not there (never a silent new key).

* Data keys and the blind-index root: the keyring (crypto.py) over the provider's `palmpay-data` /
  `palmpay-index-root`. The database records the id of the index root its blind indexes were written
  under: another root would make every palm and proxy unfindable (NOT_REGISTERED for every link).
* The OTP MAC key: `palmpay-otp-mac` from the provider (created in the key folder on a first run). The
  database records its id; a process whose provider does not hold that version refuses to start: its
  codes would not verify elsewhere, nor the others' here (servers sharing one PostgreSQL database share
  the key: one key folder, PAYOPS_KEY_PALMPAY_OTP_MAC or the key command). Codes
  sent before the provider held one (MACed under a key derived from the index root) still match until
  the first start that records an id; they live 10 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from payops.storage.keys import PALMPAY_INDEX_ROOT, PALMPAY_OTP_MAC, KeyChain, KeyProblem, KeySet, key_id_for

from .crypto import KeyRing, KeyRingError, OtpHasher, legacy_otp_key
from .options import PalmPayOptions
from .store import PalmPayStore, PostgresPalmPayStore


@dataclass(frozen=True)
class ServiceKeys:
    ring: KeyRing
    otp: OtpHasher


def load_service_keys(store: PalmPayStore | PostgresPalmPayStore, options: PalmPayOptions,
                      chain: KeyChain) -> ServiceKeys:
    """The keyring and OTP hasher; KeyRingError (one line, no key material) when data needs a missing key."""
    with store.read() as tx:
        sealed_under = tx.active_key_id()  # data exists: its key must too
        index_id, otp_id = tx.key_ids()
    ring = KeyRing.load(options.state_dir, options.data_key, expect_key_id=sealed_under, key_dir=options.key_dir,
                        command=options.key_command, provider=chain)
    index_now = key_id_for(PALMPAY_INDEX_ROOT, ring.index_root)
    if index_id is not None and index_id != index_now:
        raise KeyRingError(
            f"refusing to start: palm-pay's blind indexes were written under index root {index_id}, but the configured "
            f"keys give {index_now}; restore that '{PALMPAY_INDEX_ROOT}' key (another would make every palm unfindable)")
    otp_keys = _otp_keys(chain, otp_id)
    older = [key for kid, key in otp_keys.versions.items() if kid != otp_keys.active]
    if otp_id is None:
        older.append(legacy_otp_key(ring.index_root))  # codes sent by a version that derived the key
    with store.write() as tx:
        if tx.active_key_id() is None:
            tx.set_active_key_id(ring.active_id)
        tx.set_key_ids(index_key_id=index_now, otp_key_id=otp_keys.active)
    return ServiceKeys(ring, OtpHasher(otp_keys.active_key, older))


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
