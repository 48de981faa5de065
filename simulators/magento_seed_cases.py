"""The awkward customers and guest orders of the Magento seed, and the blocks they are made of.

Each case is one shape a contact mapper has to survive; `magento_seed` puts them first so
that even a small seed holds every one of them.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.magento_state import MagentoState


@dataclass(frozen=True)
class Place:
    """A realistic town: address parts, how its region comes back, phone and VAT style."""

    country_id: str  #: ISO alpha-2
    city: str  #: town
    postcode: str  #: valid-looking postcode
    region: str | tuple[str, str, int] | None  #: free text, (code, name, id) or none
    phone: str  #: telephone prefix
    vat: str  #: VAT id prefix


PLACES: tuple[Place, ...] = (
    Place("GB", "London", "SW1A 1AA", "Greater London", "+44 20 7946 ", "GB"),
    Place("GB", "Manchester", "M1 1AE", None, "0161 496 ", "GB"),
    Place("GB", "Edinburgh", "EH1 1YZ", "Midlothian", "0131 496 ", "GB"),
    Place("GB", "Cardiff", "CF10 1EP", None, "029 2018 ", "GB"),
    Place("GB", "Belfast", "BT1 5GS", "County Antrim", "028 9018 ", "XI"),
    Place("IE", "Dublin", "D02 X285", "Co. Dublin", "+353 1 555 ", "IE"),
    Place("FR", "Paris", "75002", ("75", "Paris", 257), "+33 1 45 67 ", "FR"),
    Place("FR", "Lyon", "69002", ("69", "Rhône", 251), "+33 4 72 00 ", "FR"),
    Place("DE", "Berlin", "10115", ("BER", "Berlin", 82), "+49 30 901 ", "DE"),
    Place("DE", "München", "80331", ("BAY", "Bayern", 81), "+49 89 233 ", "DE"),
    Place("NL", "Amsterdam", "1012 JS", None, "+31 20 555 ", "NL"),
    Place("ES", "Madrid", "28013", ("M", "Madrid", 161), "+34 91 555 ", "ES"),
    Place("US", "New York", "10001", ("NY", "New York", 43), "+1 212 555 ", "US"),
)
HOME_PLACES = PLACES[:6]  #: UK and Ireland: the base website's shoppers
EU_PLACES = PLACES[6:12]  #: the eu website's shoppers
# fmt: off
FIRST_NAMES = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Jack", "Mia", "Charlie", "Sophie",
    "Thomas", "Emily", "James", "Grace", "William", "Chloe", "Aoife", "Seán", "Camille", "Léa",
    "Lukas", "Anna", "Daan", "Sofía", "Mateo", "Siobhán", "Niamh", "Björn",
)
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Davies", "Patel", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "O'Brien", "Murphy", "Kelly", "Dubois", "Müller",
    "García", "de Vries", "Nowak", "MacDonald", "Ní Bhriain",
)
# fmt: on
STREETS = ("High Street", "Station Road", "Church Lane", "Mill Road", "Victoria Road")


#: Keys of `solo()` that describe the address rather than the customer.
_ADDRESS_KEYS = frozenset({"company", "vat_id", "telephone", "region"})


def ascii_name(text: str) -> str:
    """Email-safe local part from a name: accents stripped, other scripts dropped."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if ch.isascii() and (ch.isalnum() or ch in ".-"))
    return kept.lower() or "customer"


def phone_of(place: Place, number: int) -> str:
    """A local-format telephone for `place`."""
    return f"{place.phone}{number:04d}"


def region_of(place: Place) -> str | dict[str, Any] | None:
    """Region as the customer address API returns it: text (id 0) or a directory region."""
    if isinstance(place.region, tuple):
        code, name, region_id = place.region
        return {"region_code": code, "region": name, "region_id": region_id}
    return place.region


def address_spec(
    place: Place,
    first: str,
    last: str,
    *street: str,
    billing: bool = True,
    shipping: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """An address in `place`, flagged default billing/shipping unless told otherwise."""
    address: dict[str, Any] = {
        "firstname": first,
        "lastname": last,
        "street": list(street),
        "city": place.city,
        "postcode": place.postcode,
        "country_id": place.country_id,
        "region": region_of(place),
        "telephone": phone_of(place, len(first) * 97 + len(last)),
        "default_billing": billing,
        "default_shipping": shipping,
    }
    address.update(extra)
    return address


def customer_spec(
    first: str, last: str, email: str, addresses: list[Any], **extra: Any
) -> dict[str, Any]:
    """add_customer() keyword arguments."""
    return {"firstname": first, "lastname": last, "email": email, "addresses": addresses, **extra}


def solo(
    email: str, place: Place, first: str, last: str, *street: str, **extra: Any
) -> dict[str, Any]:
    """A customer with one default address; address keys in `extra` go onto the address."""
    on_address = {k: v for k, v in extra.items() if k in _ADDRESS_KEYS}
    on_customer = {k: v for k, v in extra.items() if k not in _ADDRESS_KEYS}
    address = address_spec(place, first, last, *street, **on_address)
    return customer_spec(first, last, email, [address], **on_customer)


def awkward_customers() -> list[dict[str, Any]]:
    """The cases a contact mapper must survive, one per customer, in a fixed order."""
    return [*_unicode_and_b2b(), *_awkward_addresses(), *_awkward_identities()]


def _unicode_and_b2b() -> list[dict[str, Any]]:
    """Unicode names and B2B customers with placeholder, blank or empty personal names."""
    london, berlin, amsterdam = PLACES[0], PLACES[8], PLACES[10]
    # fmt: off
    return [
        # The region is free text exactly as typed, trailing space included.
        solo("zoe.angstrom@example.co.uk", london, "Zoë", "Ångström", "12 Fournier Street",
             region="London "),
        solo("lukasz.zolkiewski@example.de", berlin, "Łukasz", "Żółkiewski",
             "Straße des 17. Juni 135", website_id=2, store_id=3),
        solo("taro.yamada@example.jp", london, "太郎", "山田", "3 Gerrard Street"),
        # Magento requires names, so B2B accounts carry placeholders (or blanks) and put the
        # company on the billing address.
        solo("accounts@acme-widgets.example.co.uk", london, "-", "-", "Unit 4",
             "Riverside Industrial Estate", company="Acme Widgets Ltd", vat_id="GB123456789",
             group_id=2, taxvat="GB123456789"),
        solo("inkoop@brouwerij-molen.example.nl", amsterdam, " ", " ", "Overtoom 1",
             company="Brouwerij De Molen B.V.", vat_id="NL123456789B01", group_id=2,
             website_id=2, store_id=2, taxvat="NL123456789B01"),
        solo("orders@nameless-trading.example.com", london, "", "", "1 Empty Row",
             company="Nameless Trading LLP", group_id=2),
    ]
    # fmt: on


def _awkward_addresses() -> list[dict[str, Any]]:
    """Missing addresses, a missing default billing, long streets, no telephone, US state."""
    london, manchester, dublin, new_york = PLACES[0], PLACES[1], PLACES[5], PLACES[12]
    long_street = (
        "Flat 12b, The Old Biscuit Factory Apartments (rear entrance via loading bay)",
        "Building C, Fourth Floor, Suite 401-403, attention Accounts Payable Department",
        "Clerkenwell Road Business Park, off Farringdon Lane",
        "Islington",
    )
    ship_only = [
        address_spec(manchester, "Priya", "Shiponly", "8 Canal Street", billing=False),
        address_spec(london, "Priya", "Shiponly", "2 Work Place", billing=False, shipping=False),
    ]
    # fmt: off
    return [
        customer_spec("Nadia", "Addressless", "nadia.addressless@example.com", []),
        customer_spec("Priya", "Shiponly", "priya.shiponly@example.co.uk", ship_only),
        solo("bart.long@example.co.uk", london, "Bartholomew", "Longstreet-Featherstonehaugh",
             *long_street),
        solo("ciaran.osullivan@example.ie", dublin, "Ciarán", "Ó Súilleabháin",
             "14 Baggot Street Lower", telephone=None),
        solo("mj.watson@example.com", new_york, "Mary-Jane", "Watson", "20 Ingram Street"),
    ]
    # fmt: on


def _awkward_identities() -> list[dict[str, Any]]:
    """Shared email across websites, upper-case emails, VAT ids, fr/de store customers."""
    london, paris, munich, madrid = PLACES[0], PLACES[6], PLACES[9], PLACES[11]
    # fmt: off
    return [
        # customer_entity is unique on (email, website_id): one person, two accounts.
        solo("sam.shared@example.com", london, "Sam", "Shared", "5 Twin Lane"),
        solo("sam.shared@example.com", paris, "Sam", "Shared", "5 rue des Jumeaux",
             website_id=2, store_id=2),
        solo("JOHN.UPPER@EXAMPLE.COM", london, "John", "Upper", "1 Capital Street"),
        solo("Helene.Lefevre@Example.fr", paris, "Hélène", "Lefèvre-Dubois", "8 rue de Rivoli",
             company="Atelier Lefèvre SARL", vat_id="FR40303265045", website_id=2, store_id=2,
             taxvat="FR40303265045", group_id=2),
        solo("juergen.gross@example.de", munich, "Jürgen", "Groß", "Marienplatz 8",
             vat_id="DE811569869", website_id=2, store_id=3, dob="1971-05-02", gender=1),
        solo("lucia.fernandez@example.es", madrid, "Lucía", "Fernández", "Calle Mayor 10",
             website_id=2, store_id=2, confirmation="6c5a1e0f3b2d4e7a9f8c1b0d2e3f4a5b"),
    ]
    # fmt: on


def awkward_guest_orders(state: MagentoState) -> list[dict[str, Any]]:
    """Guest orders that collide with customers, repeat, or lack customer names."""
    registered = next(iter(state.customers.values()), None)
    london, paris, new_york = PLACES[0], PLACES[6], PLACES[12]
    orders: list[dict[str, Any]] = []
    if registered is not None:
        orders.append(guest_spec(registered["email"], london, "Zoë", "Ångström"))
        orders.append(guest_spec(registered["email"].upper(), london, "Zoe", "Angstrom"))
    orders += [
        guest_spec("repeat.guest@example.org", london, "Sam", "Carter"),
        guest_spec("repeat.guest@example.org", london, "Samuel", "Carter"),
        guest_spec("repeat.guest@example.org", PLACES[1], "Sam", "Carter"),
        {
            **guest_spec("no.names@example.com", london, "Billing", "Onlyname"),
            "customer_firstname": None,
            "customer_lastname": None,
        },
        guest_spec(
            "compta@atelier-exemple.fr",
            paris,
            "Élodie",
            "Marchand",
            store_id=2,
            company="Atelier Exemple SAS",
            vat_id="FR83404833048",
        ),
        guest_spec("visitor@example.us", new_york, "Chris", "Visitor"),
        guest_spec(
            "no.phone@example.co.uk", london, "Pat", "Nophone", telephone=None, region="London "
        ),
    ]
    return orders


def guest_spec(
    email: str, place: Place, first: str, last: str, *, store_id: int = 1, **billing: Any
) -> dict[str, Any]:
    """add_guest_order() keyword arguments; the billing region is a plain string."""
    region = region_of(place)
    address: dict[str, Any] = {
        "firstname": first,
        "lastname": last,
        "street": [f"{len(email)} {STREETS[len(first) % len(STREETS)]}"],
        "city": place.city,
        "postcode": place.postcode,
        "country_id": place.country_id,
        "region": region,
        "telephone": phone_of(place, len(email) * 31),
    }
    address.update(billing)
    return {"customer_email": email, "store_id": store_id, "billing_address": address}
