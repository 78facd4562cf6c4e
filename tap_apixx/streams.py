"""Stream declarations: the 15 canonical entities as one table."""

from __future__ import annotations

import json
import typing as t
from importlib import resources

from tap_apixx.client import CanonicalStream

if t.TYPE_CHECKING:
    from singer_sdk import Tap

# entity -> what it holds. Each becomes a stream of that name, keyed by canonical_id and
# replicated incrementally on updated_at; its JSON Schema is schemas/<entity>.json.
CANONICAL_ENTITIES: dict[str, str] = {
    "customer": "Buyers of the tenant's products (B2C or B2B).",
    "contact": "People at accounts (CRM contacts).",
    "account": "Companies the tenant sells to (CRM accounts).",
    "lead": "Prospects not yet qualified.",
    "opportunity": "Deals in the sales pipeline of an account.",
    "product": "Catalog products.",
    "product_variant": "Sellable variants (size, colour) of a product.",
    "order": "Customer orders.",
    "order_line_item": "Lines of an order: a variant, quantity and price.",
    "invoice": "Invoices issued for orders.",
    "payment": "Payments against invoices.",
    "subscription": "Recurring plans of a customer for a product.",
    "refund": "Refunds of payments.",
    "shipment": "Shipments of orders.",
    "inventory": "Stock of a variant at a location.",
}


def load_schema(entity: str) -> dict[str, t.Any]:
    """The JSON Schema shipped in tap_apixx/schemas/<entity>.json."""
    text = resources.files("tap_apixx").joinpath("schemas", f"{entity}.json").read_text()
    return json.loads(text)


def canonical_streams(tap: Tap) -> list[CanonicalStream]:
    """One CanonicalStream per row of CANONICAL_ENTITIES."""
    return [
        CanonicalStream(tap=tap, name=entity, schema=load_schema(entity))
        for entity in CANONICAL_ENTITIES
    ]
