"""The infotag catalogue's rules: sibling names, cycles, inactive tags, admins, carried names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from services.contacts.domain import Actor, Contact, InfotagNotPlacedError
from services.contacts.infotags import (
    AdminRequiredError,
    InactiveInfotagError,
    InfotagCatalogue,
    InfotagCycleError,
    InfotagNameTakenError,
    InfotagNotFoundError,
    InvalidInfotagNameError,
    require_admin,
    upcast_placement_v1,
)
from shared.contract.infotags import name_key, tag_id_for_path

ADMIN = Actor("root", "corr-1")
ROOT = Path(__file__).resolve().parents[2]


def catalogue_with_kunde() -> tuple[InfotagCatalogue, UUID, UUID]:
    catalogue = InfotagCatalogue.create(ADMIN)
    kunde = catalogue.define(ADMIN, tag_id=uuid4(), name="Kunde", parent_id=None)
    guld = catalogue.define(ADMIN, tag_id=uuid4(), name="Guld", parent_id=kunde)
    return catalogue, kunde, guld


def test_a_sibling_name_differing_only_in_case_is_refused() -> None:
    catalogue = InfotagCatalogue.create(ADMIN)
    catalogue.define(ADMIN, tag_id=uuid4(), name="VIP", parent_id=None)
    with pytest.raises(InfotagNameTakenError):
        catalogue.define(ADMIN, tag_id=uuid4(), name="vip", parent_id=None)


def test_names_are_compared_after_nfkc_so_compatibility_forms_collide() -> None:
    fullwidth_vip = "\uff36\uff29\uff30"
    assert name_key(fullwidth_vip) == name_key("vip")
    assert name_key("Sølv") != name_key("Solv")


def test_the_same_name_under_different_parents_is_allowed() -> None:
    catalogue, _, guld = catalogue_with_kunde()
    partner = catalogue.define(ADMIN, tag_id=uuid4(), name="Partner", parent_id=None)
    other = catalogue.define(ADMIN, tag_id=uuid4(), name="Guld", parent_id=partner)
    assert catalogue.path(other) == "Partner/Guld"
    assert catalogue.path(guld) == "Kunde/Guld"


def test_renaming_onto_a_sibling_name_is_refused_but_changing_case_is_not() -> None:
    catalogue, kunde, guld = catalogue_with_kunde()
    catalogue.define(ADMIN, tag_id=uuid4(), name="Sølv", parent_id=kunde)
    with pytest.raises(InfotagNameTakenError):
        catalogue.rename(ADMIN, guld, "SØLV")
    assert catalogue.rename(ADMIN, guld, "GULD")
    assert catalogue.path(guld) == "Kunde/GULD"


def test_moving_a_tag_under_its_own_descendant_is_a_cycle() -> None:
    catalogue, kunde, guld = catalogue_with_kunde()
    with pytest.raises(InfotagCycleError):
        catalogue.move(ADMIN, kunde, guld)
    with pytest.raises(InfotagCycleError):
        catalogue.move(ADMIN, kunde, kunde)


def test_moving_changes_the_path_of_the_tag_and_its_descendants() -> None:
    catalogue, kunde, guld = catalogue_with_kunde()
    top = catalogue.define(ADMIN, tag_id=uuid4(), name="Segment", parent_id=None)
    assert catalogue.move(ADMIN, kunde, top)
    assert catalogue.path(guld) == "Segment/Kunde/Guld"
    assert catalogue.descendants(top) == {kunde, guld}


def test_moving_next_to_a_sibling_of_the_same_name_is_refused() -> None:
    catalogue, _, guld = catalogue_with_kunde()
    catalogue.define(ADMIN, tag_id=uuid4(), name="guld", parent_id=None)
    with pytest.raises(InfotagNameTakenError):
        catalogue.move(ADMIN, guld, None)


def test_an_inactive_tag_refuses_placement_until_reactivated() -> None:
    catalogue, _, guld = catalogue_with_kunde()
    assert catalogue.deactivate(ADMIN, guld)
    with pytest.raises(InactiveInfotagError):
        catalogue.require_placeable(guld)
    assert catalogue.find_path("kunde/GULD") == guld  # still found for searching
    assert catalogue.reactivate(ADMIN, guld)
    catalogue.require_placeable(guld)


def test_an_inactive_tag_takes_no_new_children() -> None:
    catalogue, kunde, _ = catalogue_with_kunde()
    catalogue.deactivate(ADMIN, kunde)
    with pytest.raises(InactiveInfotagError):
        catalogue.define(ADMIN, tag_id=uuid4(), name="Bronze", parent_id=kunde)


def test_an_unknown_tag_is_named() -> None:
    catalogue = InfotagCatalogue.create(ADMIN)
    with pytest.raises(InfotagNotFoundError):
        catalogue.rename(ADMIN, uuid4(), "x")
    with pytest.raises(InfotagNotFoundError):
        catalogue.define(ADMIN, tag_id=uuid4(), name="x", parent_id=uuid4())


@pytest.mark.parametrize("name", ["", "   ", "Kunde/Guld", "x" * 101])
def test_a_name_that_is_empty_too_long_or_a_path_is_refused(name: str) -> None:
    catalogue = InfotagCatalogue.create(ADMIN)
    with pytest.raises(InvalidInfotagNameError):
        catalogue.define(ADMIN, tag_id=uuid4(), name=name, parent_id=None)


def test_only_an_admin_may_change_the_catalogue() -> None:
    with pytest.raises(AdminRequiredError):
        require_admin(frozenset({"sales"}))
    require_admin(frozenset({"admin"}))


def test_each_change_records_who_made_it() -> None:
    catalogue, _, guld = catalogue_with_kunde()
    catalogue.rename(Actor("bob", "corr-2"), guld, "Gold")
    events = catalogue.collect_events()
    assert [type(e).__name__ for e in events] == ["Created", "Defined", "Defined", "Renamed"]
    assert events[-1].actor == "bob"  # type: ignore[attr-defined]


def test_a_name_path_defines_its_parents_under_deterministic_ids() -> None:
    catalogue = InfotagCatalogue.create(ADMIN)
    guld = catalogue.define_path(ADMIN, "Kunde/Guld")
    assert guld == tag_id_for_path("kunde / guld")
    assert catalogue.path(guld) == "Kunde/Guld"
    assert catalogue.define_path(ADMIN, "KUNDE/guld") == guld
    assert len(catalogue.tags) == 2


def test_a_v1_placement_by_name_upcasts_to_the_tag_id_its_path_was_carried_to() -> None:
    stored = {"tag": "Kunde/Guld", "actor": "alice", "person_id": "p"}
    assert upcast_placement_v1(stored) == {
        "actor": "alice",
        "person_id": "p",
        "tag_id": tag_id_for_path("Kunde/Guld"),
    }


def test_a_catalogue_rebuilt_from_its_events_equals_the_original() -> None:
    catalogue, _, guld = catalogue_with_kunde()
    catalogue.deactivate(ADMIN, guld)
    events = catalogue.collect_events()
    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, InfotagCatalogue)
    assert rebuilt.tags == catalogue.tags


def new_contact() -> Contact:
    return Contact.create(
        contact_id=uuid4(),
        person_id=uuid4(),
        actor=ADMIN,
        company_id=uuid4(),
        company_name="Acme A/S",
        details={"first_names": "Karen", "last_names": "Jensen"},
    )


def test_a_catalogue_placement_is_found_by_id_after_the_tag_is_renamed() -> None:
    catalogue, _, guld = catalogue_with_kunde()
    contact = new_contact()
    contact.add_catalogue_infotag(ADMIN, guld, catalogue.path(guld), placed=False)
    catalogue.rename(ADMIN, guld, "Gold")
    assert contact.placed_as(guld, tag_id_for_path) == "Kunde/Guld"
    assert contact.placed_as(uuid4(), tag_id_for_path) is None
    contact.remove_catalogue_infotag(ADMIN, guld, contact.placed_as(guld, tag_id_for_path))
    assert contact.infotags == {}


def test_a_placement_by_name_is_the_tag_of_its_deterministic_id() -> None:
    contact = new_contact()
    contact.add_infotag(ADMIN, "Kunde/Guld")
    assert contact.placed_as(tag_id_for_path("kunde/GULD"), tag_id_for_path) == "Kunde/Guld"


def test_a_placement_stored_before_tag_ids_reads_as_one_by_name() -> None:
    contact = new_contact()
    contact.add_infotag(ADMIN, "VIP")
    added = contact.collect_events()[-1]
    older = object.__new__(Contact.InfotagAdded)
    # What the mapper does with a stored event: its state becomes the event's __dict__.
    object.__setattr__(older, "__dict__", {k: v for k, v in vars(added).items() if k != "tag_id"})
    rebuilt = new_contact()
    older.apply(rebuilt)
    assert older.tag_id is None and "tag_id" not in rebuilt.infotags["VIP"]
    assert rebuilt.placed_as(tag_id_for_path("vip"), tag_id_for_path) == "VIP"


def test_removing_a_catalogue_tag_not_placed_is_named() -> None:
    with pytest.raises(InfotagNotPlacedError):
        new_contact().remove_catalogue_infotag(ADMIN, uuid4(), None)


def test_a_process_that_only_reads_the_catalogue_resolves_its_stored_topics() -> None:
    # A fresh interpreter importing only the relay's composition root, as a relay process
    # (or an API restarted after the catalogue was made) decodes stored catalogue events.
    code = (
        "from eventsourcing.utils import resolve_topic\n"
        "import services.contacts.relay_main\n"
        "from services.contacts.integration import CATALOGUE_STORE_TOPICS\n"
        "for topic in sorted(CATALOGUE_STORE_TOPICS) + ['kontakt:InfotagCatalogueCreated']:\n"
        "    print(resolve_topic(topic).__qualname__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "InfotagCatalogue.Defined" in done.stdout.split()
