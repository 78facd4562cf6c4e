"""The 15 canonical entities as data: their fields, foreign keys and value generators."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Gen = Callable[[random.Random, dict[str, list[str]]], Any]

CURRENCIES = ("USD", "USD", "USD", "EUR", "GBP", "CAD")
FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elif", "Femi", "Greta", "Hiro", "Ines", "Jonas", "Kira",
         "Luis", "Mina", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vik")
LAST = ("Adams", "Baker", "Chen", "Diaz", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jones",
        "Kowalski", "Lopez", "Murphy", "Nguyen", "Okafor", "Patel", "Rossi", "Silva", "Tanaka")
WORDS = ("Acme", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris",
         "Juniper", "Kite", "Lumen", "Maple", "North", "Orbit", "Pine", "Quartz", "River")
SOURCES = ("shopify", "netsuite", "stripe", "hubspot", "salesforce", "zendesk")


def between(rng: random.Random, low: int, high: int) -> int:
    """A uniform integer in low..high: randint's distribution at a third of its cost (the
    generator makes millions of these)."""
    return low + int(rng.random() * (high - low + 1))


def pick(*choices: Any) -> Gen:
    return lambda rng, refs: rng.choice(choices)


def cents(low: int, high: int) -> Gen:
    return lambda rng, refs: between(rng, low, high)


def nullable(gen: Gen, null_rate: float = 0.1) -> Gen:
    return lambda rng, refs: None if rng.random() < null_rate else gen(rng, refs)


def ref(entity: str) -> Gen:
    """A foreign key: the canonical id of an existing record of `entity` in the same dataset."""
    return lambda rng, refs: rng.choice(refs[entity])


def name(rng: random.Random, refs: dict) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def first(rng: random.Random, refs: dict) -> str:
    return rng.choice(FIRST)


def last(rng: random.Random, refs: dict) -> str:
    return rng.choice(LAST)


def email(rng: random.Random, refs: dict) -> str:
    return f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}{between(rng, 1, 999)}@example.com"


def company(rng: random.Random, refs: dict) -> str:
    return f"{rng.choice(WORDS)} {rng.choice(('Labs', 'Goods', 'Systems', 'Foods', 'Outfitters'))}"


def phone(rng: random.Random, refs: dict) -> str:
    return f"+1-555-{between(rng, 100, 999)}-{between(rng, 1000, 9999)}"


def number(prefix: str, digits: int = 6) -> Gen:
    return lambda rng, refs: f"{prefix}{between(rng, 10 ** (digits - 1), 10 ** digits - 1)}"


def integer(low: int, high: int) -> Gen:
    return lambda rng, refs: between(rng, low, high)


# Timestamps and dates are filled in from the record's updated_at by the generator (they must
# not be later than it), so here they are only markers.
TIMESTAMP = "timestamp"  # up to 30 days before updated_at (created_at: a record changes later)
RECENT = "recent"  # up to 6 hours before it (an order's placed_at: paid and fulfilled soon after)
DATE = "date"


@dataclass(frozen=True)
class Entity:
    """One canonical entity: its fields in API order and the system its ids usually come from."""

    name: str
    fields: dict[str, Gen | str]
    source: str = "shopify"
    foreign_keys: dict[str, str] = field(default_factory=dict)


def _entity(name_: str, system: str, /, **fields: Gen | str) -> Entity:
    fks = {f: f[:-3] for f in fields if f.endswith("_id")}
    return Entity(name_, fields, system, fks)


ENTITIES: dict[str, Entity] = {e.name: e for e in [
    _entity("account", "salesforce", name=company, domain=lambda r, _: f"{r.choice(WORDS).lower()}{between(r, 1, 999)}.example",
            industry=pick("retail", "software", "manufacturing", "healthcare", "logistics"),
            employee_count=nullable(integer(1, 20000)), annual_revenue_cents=nullable(cents(10**7, 10**11)),
            currency=pick(*CURRENCIES), owner_email=email, created_at=TIMESTAMP),
    _entity("customer", "shopify", email=email, first_name=first, last_name=last, phone=nullable(phone, 0.3),
            status=pick("active", "active", "active", "inactive"),
            lifetime_value_cents=cents(0, 5_000_000), currency=pick(*CURRENCIES), created_at=TIMESTAMP),
    _entity("contact", "hubspot", account_id=ref("account"), first_name=first, last_name=last, email=email,
            title=nullable(pick("CEO", "CFO", "Buyer", "Ops Lead", "Engineer", "Analyst"), 0.2),
            phone=nullable(phone, 0.4), created_at=TIMESTAMP),
    _entity("lead", "hubspot", first_name=first, last_name=last, email=email, company=nullable(company, 0.2),
            source=pick("web", "referral", "event", "ads", "outbound"),
            status=pick("new", "working", "qualified", "disqualified"), score=integer(0, 100), created_at=TIMESTAMP),
    _entity("opportunity", "salesforce", account_id=ref("account"), name=lambda r, _: f"{r.choice(WORDS)} renewal",
            stage=pick("prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"),
            amount_cents=cents(50_000, 50_000_000), currency=pick(*CURRENCIES), probability=integer(0, 100),
            expected_close_date=DATE, created_at=TIMESTAMP),
    _entity("product", "shopify", sku=number("SKU-"), name=lambda r, _: f"{r.choice(WORDS)} {r.choice(('Mug', 'Tee', 'Pack', 'Lamp', 'Kit'))}",
            description=nullable(lambda r, _: f"A {r.choice(('durable', 'light', 'classic', 'new'))} item", 0.3),
            category=pick("apparel", "home", "outdoor", "office", "kitchen"), status=pick("active", "active", "archived"),
            created_at=TIMESTAMP),
    _entity("product_variant", "shopify", product_id=ref("product"), sku=number("SKU-V"),
            title=pick("Small", "Medium", "Large", "Red", "Blue", "Default"), price_cents=cents(199, 49_999),
            currency=pick(*CURRENCIES), weight_grams=nullable(integer(10, 20_000), 0.2), created_at=TIMESTAMP),
    _entity("order", "shopify", order_number=number("", 5), customer_id=ref("customer"),
            status=pick("pending", "paid", "paid", "fulfilled", "cancelled", "refunded"),
            subtotal_cents=cents(500, 400_000), tax_cents=cents(0, 40_000), total_cents=cents(500, 440_000),
            currency=pick(*CURRENCIES), placed_at=RECENT),
    _entity("order_line_item", "shopify", order_id=ref("order"), product_variant_id=ref("product_variant"),
            quantity=integer(1, 12), unit_price_cents=cents(199, 49_999), total_cents=cents(199, 599_988),
            currency=pick(*CURRENCIES)),
    _entity("invoice", "netsuite", order_id=ref("order"), customer_id=ref("customer"), invoice_number=number("INV-"),
            status=pick("draft", "open", "paid", "paid", "void"), amount_due_cents=cents(500, 440_000),
            amount_paid_cents=cents(0, 440_000), currency=pick(*CURRENCIES), issued_at=TIMESTAMP, due_date=DATE),
    _entity("payment", "stripe", invoice_id=ref("invoice"), amount_cents=cents(500, 440_000),
            currency=pick(*CURRENCIES), method=pick("card", "card", "ach", "wire", "paypal"),
            status=pick("succeeded", "succeeded", "pending", "failed"), paid_at=nullable(lambda r, _: TIMESTAMP, 0.1)),
    _entity("subscription", "stripe", customer_id=ref("customer"), product_id=ref("product"),
            plan=pick("monthly", "annual", "quarterly"), status=pick("active", "active", "trialing", "past_due", "canceled"),
            mrr_cents=cents(500, 200_000), currency=pick(*CURRENCIES), started_at=TIMESTAMP,
            canceled_at=nullable(lambda r, _: TIMESTAMP, 0.8)),
    _entity("refund", "stripe", payment_id=ref("payment"), amount_cents=cents(100, 100_000), currency=pick(*CURRENCIES),
            reason=nullable(pick("damaged", "late", "duplicate", "customer_request"), 0.2),
            status=pick("succeeded", "pending", "failed"), refunded_at=TIMESTAMP),
    _entity("shipment", "shopify", order_id=ref("order"), carrier=pick("ups", "fedex", "usps", "dhl"),
            tracking_number=number("1Z", 12), status=pick("label_created", "in_transit", "delivered", "returned"),
            shipped_at=TIMESTAMP, delivered_at=nullable(lambda r, _: TIMESTAMP, 0.4)),
    _entity("inventory", "netsuite", product_variant_id=ref("product_variant"),
            location=pick("warehouse-east", "warehouse-west", "store-01", "store-02"),
            quantity_on_hand=integer(0, 5000), quantity_reserved=integer(0, 200), reorder_point=nullable(integer(0, 500), 0.2)),
]}

# Fields computed from others once a record is generated, so that sums add up.
DERIVED: dict[str, Callable[[dict[str, Any]], None]] = {
    "order": lambda r: r.update(total_cents=r["subtotal_cents"] + r["tax_cents"]),
    "order_line_item": lambda r: r.update(total_cents=r["quantity"] * r["unit_price_cents"]),
    "invoice": lambda r: r.update(amount_paid_cents=r["amount_due_cents"] if r["status"] == "paid" else 0),
}

# Generation order: every entity after the entities its foreign keys point at.
GENERATION_ORDER = [
    "account", "customer", "contact", "lead", "opportunity", "product", "product_variant", "order",
    "order_line_item", "invoice", "payment", "subscription", "refund", "shipment", "inventory",
]
ENTITY_NAMES = tuple(sorted(ENTITIES))
COMMON_FIELDS = ("canonical_id", "external_ids", "last_source_update_at", "updated_at")


def field_names(entity: str) -> tuple[str, ...]:
    """All fields a record of `entity` has, in the order the API returns them."""
    return ("canonical_id", *ENTITIES[entity].fields, "external_ids", "last_source_update_at", "updated_at")
