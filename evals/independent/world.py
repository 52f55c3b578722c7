"""The held-out generator's world: a payment platform as an operations manager knows it.

Written apart from the project's simulator (signals/simulator.py, signals/scenarios.py,
evals/scenarios.py are neither imported nor copied): its own names, shares, decline
mixes and latencies, drawn per seed.

What the platform looks like:
- banks of very unequal size (a few big ones, a long tail), each with its own decline
  habits (a bank whose customers run short at month-end declines more);
- card traffic goes through 2-4 acquirer routes; each merchant has one acquirer
  (merchants sign with one), so a route's traffic is a set of merchants;
- card schemes per bank (a bank issues mostly one scheme, some of another);
- instant payments (payshap), EFT and palm each have their own rail route; a wallet
  rides on one card acquirer only when the world has one;
- terminals belong to merchants (card-present and palm); e-commerce card has none;
- merchants price in their own currency (mostly ZAR, some USD/EUR/...).
Names carry spaces, punctuation and non-ASCII letters: they are data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Name pools (invented, not real institutions, except where a name is the issue's own example).
BANK_NAMES = (
    "Société Générale du Cap", "Bank #7 (Ltd.)", "Ürün Pay", "Ubuntu Savings & Loan", "Kgalagadi Trust",
    "Þórsbanki", "São Tomé Crédito", "Mzansi Mutual", "Öresund Bank", "Banco Niño", "Zürich Kantonal (ZA)",
    "Ndlovu Bank / Ltd", "Čapek Spořitelna", "Łódź Finanse", "İstanbul Katılım", "Crédit du Karoo",
    "Ñandú Banco", "Māori Kiwibank Co-op", "Vaalkop Boere-Bank", "Ōsaka Shinkin",
)
CARD_ROUTE_NAMES = (
    "acq: Peach (primary)", "Worldline/ZA", "PSP Älpha", "Cellulant-Ké", "Nuvei #2", "Acquirer «Nord»",
    "Adumo · card", "Paygate (legacy)",
)
RAIL_NAMES = {"payshap": ("Stitch → PayShap", "RTC·PayShap hub"), "eft": ("EFT bulk (ACB)", "Ozow-é EFT"),
              "palm": ("PalmGate Ω", "palm-rail #1")}
WALLET_NAMES = ("Wället Go", "SnapScan-ish ✓", "Zapper+")
SCHEME_NAMES = ("VISA", "MASTERCARD", "AMEX", "UnionPay 银联", "Diners Club", "JCB")
RAIL_ISSUERS = {"payshap": "PAYSHAP", "eft": "EFT-ACB", "palm": "PALM-RAIL", "wallet": "WALLET"}
MERCHANT_NAMES = (
    "Café Müller", "Woolies Food #12", "Spaza 'Ma Thandi'", "Bäckerei & Söhne", "Ōmori Ramen", "Jo'burg Taxi Rank",
    "Pick-n-Pay (Sandton)", "Ñam Ñam Tacos", "Élan Fashion", "Kwa-Mai Hardware", "Dr. Øster Pharmacy",
    "Şehir Market", "Boekhandel „Van Wyk“", "Stadium Gate 3", "e-Shop 24/7", "Fête & Co.",
)
REGIONS = ("Gauteng", "KwaZulu-Natal", "Western Cape", "Île-de-France", "Eastern Cape", "Limpopo")
CURRENCIES = ("ZAR", "USD", "EUR", "GBP", "KES", "NGN")

METHODS = ("card", "payshap", "eft", "wallet", "palm")

# Normal decline mixes per method (share of attempts that the customer's side declines), with the
# codes in the proportions a card or rail team usually sees. Banks scale the level, not the mix.
USER_DECLINE_LEVEL = {"card": (0.04, 0.08), "payshap": (0.02, 0.04), "eft": (0.03, 0.06), "wallet": (0.02, 0.04),
                      "palm": (0.02, 0.05)}
USER_CODES = {
    "card": {"INSUFFICIENT_FUNDS": 0.45, "DO_NOT_HONOR": 0.22, "INCORRECT_PIN": 0.1, "EXPIRED_CARD": 0.08,
             "USER_DECLINED": 0.08, "SUSPECTED_FRAUD": 0.04, "RESTRICTED_CARD": 0.03},
    "payshap": {"INSUFFICIENT_FUNDS": 0.55, "USER_DECLINED": 0.35, "DO_NOT_HONOR": 0.1},
    "eft": {"INSUFFICIENT_FUNDS": 0.7, "USER_DECLINED": 0.2, "DO_NOT_HONOR": 0.1},
    "wallet": {"INSUFFICIENT_FUNDS": 0.6, "USER_DECLINED": 0.4},
    "palm": {"PALM_PAY_VERIFICATION_EXPIRED": 0.3, "PALM_PAY_DAILY_LIMIT": 0.2, "INSUFFICIENT_FUNDS": 0.3,
             "PALM_PAY_LINK_INACTIVE": 0.1, "PALM_PAY_NOT_REGISTERED": 0.1},
}
# Background technical failures every route has on a good day (timeouts, resets).
ROUTE_NOISE = (0.002, 0.008)
NOISE_CODES = {"NETWORK_ERROR": 0.4, "GATEWAY_TIMEOUT": 0.35, "SYSTEM_ERROR": 0.25}
BANK_TIMEOUT_NOISE = (0.0005, 0.003)


def _pick(rng: np.random.Generator, pool: tuple[str, ...], n: int) -> list[str]:
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _shares(rng: np.random.Generator, n: int, skew: float) -> np.ndarray:
    """Zipf-like market shares with noise: a few big players, a long tail."""
    raw = rng.uniform(0.6, 1.4, size=n) / np.arange(1, n + 1) ** skew
    return raw / raw.sum()


@dataclass
class Bank:
    name: str
    share: float
    decline_scale: float  # its customers' decline level relative to the method's normal
    timeout_rate: float  # background BANK_TIMEOUT
    schemes: dict[str, float]  # card schemes it issues


@dataclass
class Route:
    name: str
    methods: tuple[str, ...]
    latency_median_ms: float
    latency_sigma: float
    noise: float  # background technical failure rate


@dataclass
class Merchant:
    name: str
    share: float
    card_route: str  # its acquirer
    currency: str
    amount_median: float
    region: str
    terminals: tuple[str, ...]  # card-present / palm terminals (may be empty: online only)
    online_share: float  # card attempts with no terminal (e-commerce)


@dataclass
class World:
    seed: int
    ppm: float  # payments per minute at the baseline (first attempts)
    banks: list[Bank]
    routes: list[Route]
    merchants: list[Merchant]
    method_mix: dict[str, float]
    decline_level: dict[str, float]  # per method, before the bank's scale
    palm_terminals: tuple[str, ...]
    extras: dict[str, object] = field(default_factory=dict)

    def route(self, name: str) -> Route:
        return next(r for r in self.routes if r.name == name)

    def routes_for(self, method: str) -> list[str]:
        return [r.name for r in self.routes if method in r.methods]

    @property
    def card_routes(self) -> list[str]:
        return [r.name for r in self.routes if "card" in r.methods]

    @property
    def schemes(self) -> list[str]:
        return sorted({s for b in self.banks for s in b.schemes})

    def describe(self) -> dict[str, object]:
        return {"ppm": round(self.ppm, 1), "banks": [b.name for b in self.banks],
                "routes": [r.name for r in self.routes], "merchants": [m.name for m in self.merchants],
                "methods": dict(self.method_mix)}


def build_world(seed: int, ppm: float, *, sole_method_route: bool = False, tiny_bank: bool = False) -> World:
    """A platform drawn from the seed. `sole_method_route`: a wallet that only one card acquirer carries.
    `tiny_bank`: a bank with a sliver of traffic and many declines (normal for it)."""
    rng = np.random.default_rng(seed)
    n_banks = int(rng.integers(4, 9))
    bank_names = _pick(rng, BANK_NAMES, n_banks + 1)
    shares = _shares(rng, n_banks, rng.uniform(0.7, 1.2))
    scheme_names = ["VISA", "MASTERCARD"] + _pick(rng, SCHEME_NAMES[2:], int(rng.integers(0, 3)))
    banks: list[Bank] = []
    for name, share in zip(bank_names[:n_banks], shares, strict=True):  # the last name is the tiny bank's
        main = scheme_names[int(rng.integers(0, 2))]
        mix = {s: float(rng.uniform(0.02, 0.12)) for s in scheme_names if s != main}
        mix[main] = 1.0 - sum(mix.values())
        banks.append(Bank(name, float(share), float(rng.uniform(0.6, 1.8)), float(rng.uniform(*BANK_TIMEOUT_NOISE)),
                          mix))
    if tiny_bank:
        # A small co-op bank: a sliver of traffic whose customers are declined four times as often.
        banks.append(Bank(bank_names[-1], 0.004, 4.0, BANK_TIMEOUT_NOISE[0], {"MASTERCARD": 1.0}))
        total = sum(b.share for b in banks)
        for b in banks:
            b.share /= total

    n_card = int(rng.integers(2, 5))
    if sole_method_route:
        n_card = 3
    card_names = _pick(rng, CARD_ROUTE_NAMES, n_card)
    wallet_on: str | None = None
    has_wallet = sole_method_route or rng.random() < 0.5
    if has_wallet:
        wallet_on = card_names[-1]
    routes = [Route(n, ("card", "wallet") if n == wallet_on else ("card",), float(rng.uniform(280, 650)),
                    float(rng.uniform(0.35, 0.6)), float(rng.uniform(*ROUTE_NOISE))) for n in card_names]
    for method, names in RAIL_NAMES.items():
        routes.append(Route(names[int(rng.integers(0, len(names)))], (method,), float(rng.uniform(300, 1500)),
                            float(rng.uniform(0.3, 0.55)), float(rng.uniform(*ROUTE_NOISE))))

    mix = {"card": rng.uniform(0.5, 0.7), "payshap": rng.uniform(0.1, 0.2), "eft": rng.uniform(0.05, 0.12),
           "palm": rng.uniform(0.05, 0.12)}
    if has_wallet:
        mix["wallet"] = rng.uniform(0.04, 0.1)
    total = sum(mix.values())
    method_mix = {m: float(v / total) for m, v in mix.items()}

    n_merchants = int(rng.integers(5, 11))
    m_names = _pick(rng, MERCHANT_NAMES, n_merchants)
    m_shares = _shares(rng, n_merchants, rng.uniform(0.5, 1.0))
    # Spread merchants over acquirers so every card route carries traffic.
    acquirers = [card_names[i % n_card] for i in rng.permutation(n_merchants)]
    merchants: list[Merchant] = []
    palm_terminals: list[str] = []
    for i, (name, share) in enumerate(zip(m_names, m_shares, strict=True)):
        currency = "ZAR" if rng.random() < 0.7 else CURRENCIES[int(rng.integers(1, len(CURRENCIES)))]
        n_term = int(rng.integers(0, 5))
        short = "".join(ch for ch in name if ch.isalnum())[:6]
        terminals = tuple(f"{'Kiosk' if k % 2 else 'POS'} {short}-{k + 1:02d}" if k % 3 else f"palm·{short}#{k + 1}"
                          for k in range(n_term))
        palm_terminals.extend(t for t in terminals if t.startswith("palm"))
        merchants.append(Merchant(name, float(share), acquirers[i], currency, float(rng.uniform(40, 900)),
                                  REGIONS[int(rng.integers(0, len(REGIONS)))], terminals,
                                  1.0 if not terminals else float(rng.uniform(0.2, 0.8))))
    if not palm_terminals:
        # Palm needs a scanner somewhere: give the biggest merchant one.
        m = merchants[0]
        m.terminals = m.terminals + (f"palm·{''.join(ch for ch in m.name if ch.isalnum())[:6]}#9",)
        m.online_share = min(m.online_share, 0.7)
        palm_terminals.append(m.terminals[-1])
    decline_level = {m: float(rng.uniform(*USER_DECLINE_LEVEL[m])) for m in method_mix}
    return World(seed, float(ppm), banks, routes, merchants, method_mix, decline_level, tuple(palm_terminals),
                 extras={"wallet_route": wallet_on})
