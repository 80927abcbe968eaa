"""One account per person, however their name is typed: the use cases normalise user names.

``Ana``, ``ANA``, full-width ``ana`` (U+FF41 U+FF4E U+FF41) and `` ana `` are the
same person; so are the composed and decomposed forms of ``josé``. A new name is stored in its
normal form (NFKC, case-folded, white space collapsed), may not be empty nor
hold control or invisible characters, and keeps its bound after normalising.

Accounts registered before names were normalised keep their stored name and
id: they are found by that exact name, and by any form that folds to it
unless two of them fold alike (then each only by its exact name). A new name
that folds like any of them is taken.
"""

from __future__ import annotations

import pytest

from domain.application import PlantApplication
from domain.bounds import MAX_USERNAME_LENGTH
from domain.errors import DomainError, InputTooLarge, LoginRefused, OperatorExists
from domain.operator import Operator, operator_id
from domain.operator_directory import OperatorDirectory, directory_id
from domain.permissions import Action
from tests.unit.domain.plant import T0, fields, names, operator_events, stored_events
from tests.unit.domain.secured_plant import secured_app

JOSE_NFC = "jos\u00e9"
JOSE_NFD = "jose\u0301"


@pytest.fixture
def app() -> PlantApplication:
    return secured_app()  # ana, bob, ... registered in normal form


def register(app: PlantApplication, username: str) -> None:
    app.register_operator(
        username=username, full_name="Someone", roles=["operator"], password_hash="h",
        totp_secret_sealed=f"sealed:{username}", actor="admin", at=T0,
    )  # fmt: skip


def register_as_before(app: PlantApplication, username: str) -> None:
    """What registering did before names were normalised: stored and listed as typed."""
    operator = Operator.register(
        username=username, full_name="Legacy", roles=["operator"], password_hash="h",
        totp_secret_sealed=f"sealed:{username}", actor="admin", at=T0,
    )  # fmt: skip
    directory: OperatorDirectory = app.repository.get(directory_id(app.plant_id))
    directory.list_operator(username, actor="admin", at=T0)
    app.save(operator, directory)


def log_in(app: PlantApplication, username: str, sid: str = "s1") -> Operator:
    return app.log_in(
        username=username, password_matches=True, source="10.0.0.7", session_id=sid,
        refresh_hash=f"hash-{sid}", at=T0,
    )  # fmt: skip


def stored(app: PlantApplication) -> int:
    return app.recorder.max_notification_id() or 0


# -- one person, one account ------------------------------------------------------------------


@pytest.mark.parametrize(
    "look_alike",
    ["Ana", "ANA", " ana ", "\uff41\uff4e\uff41", "\uff21na", "ana\u3000", "\u24d0na"],
    ids=["title", "upper", "padded", "fullwidth", "fullwidth-capital", "ideographic-space",
         "circled"],
)  # fmt: skip
def test_a_look_alike_of_a_taken_name_is_taken(app: PlantApplication, look_alike: str) -> None:
    before = stored(app)
    with pytest.raises(OperatorExists):
        register(app, look_alike)
    assert stored(app) == before


def test_the_composed_and_decomposed_forms_of_a_name_are_one_account(app: PlantApplication) -> None:
    register(app, JOSE_NFD)
    with pytest.raises(OperatorExists):
        register(app, JOSE_NFC)
    assert log_in(app, JOSE_NFC).username == JOSE_NFC
    assert app.get_operator(JOSE_NFD).id == operator_id(JOSE_NFC)


def test_a_new_name_is_stored_and_listed_in_its_normal_form(app: PlantApplication) -> None:
    register(app, "  Mary\u00a0\u00a0JANE ")
    operator = app.get_operator("mary jane")
    assert operator.username == "mary jane"
    assert operator.id == operator_id("mary jane")
    registered = stored_events(app, operator.id)[0]
    assert fields(registered)["username"] == "mary jane"
    assert "mary jane" in [op.username for op in app.list_operators()]


def test_the_same_person_logs_in_and_is_managed_by_any_form_of_their_name(
    app: PlantApplication,
) -> None:
    operator = log_in(app, "ANA")
    assert operator.username == "ana"
    assert names(operator_events(app, "ana"))[-1] == "LoginSucceeded"
    assert app.authenticate(username="\uff21na", session_id="s1", at=T0).username == "ana"

    assert app.grant_permission(username=" Ana ", scope="device:mixer9", actor="admin", at=T0)
    assert app.grant_role(username="ANA", role="supervisor", actor="admin", at=T0)
    assert app.get_operator("ana").scopes == ("area:north", "device:mixer9")
    assert app.is_operator_allowed("\uff41na", Action.REQUEST_COMMAND, device="mixer9")
    assert app.disable_operator(username="Ana", reason="left", actor="admin", at=T0)
    with pytest.raises(LoginRefused) as refused:
        log_in(app, "ana", sid="s2")
    assert refused.value.reason == "disabled"


# -- what a name may not be -------------------------------------------------------------------


@pytest.mark.parametrize(
    "blank", ["", " ", "\t", "\u3000", "\u00a0\u2003"], ids=["empty", "space", "tab",
                                                          "ideographic-space", "nbsp-em"]
)  # fmt: skip
def test_an_empty_or_blank_name_is_refused_and_nothing_is_recorded(
    app: PlantApplication, blank: str
) -> None:
    before = stored(app)
    with pytest.raises(DomainError) as refused:
        register(app, blank)
    assert getattr(refused.value, "reason", None) in ("empty", "control_character")
    assert stored(app) == before


@pytest.mark.parametrize(
    "name",
    ["ana\x00", "an\na", "a\x7fna", "an\u200ba", "a\u202ena", "\u00adana", "ana\u2028",
     "an\ue000a"],
    ids=["nul", "newline", "delete", "zero-width-space", "rtl-override", "soft-hyphen",
         "line-separator", "private-use"],
)  # fmt: skip
def test_control_and_invisible_characters_are_refused(app: PlantApplication, name: str) -> None:
    before = stored(app)
    with pytest.raises(DomainError) as refused:
        register(app, name)
    assert getattr(refused.value, "reason", None) == "control_character"
    assert stored(app) == before


def test_a_name_that_grows_past_its_bound_when_normalised_is_refused(
    app: PlantApplication,
) -> None:
    grows = "\ufdfa" * 4  # each is 18 characters in NFKC
    assert len(grows) <= MAX_USERNAME_LENGTH
    with pytest.raises(InputTooLarge) as refused:
        register(app, grows)
    assert (refused.value.field, refused.value.limit) == ("username", MAX_USERNAME_LENGTH)


def test_a_login_with_a_name_no_account_can_have_is_an_unknown_login(
    app: PlantApplication,
) -> None:
    for name in ("", "ana\x00"):
        with pytest.raises(LoginRefused) as refused:
            log_in(app, name)
        assert refused.value.reason == "invalid_credentials"
    tried = stored_events(app, directory_id(app.plant_id))[-2:]
    assert [fields(e)["username"] for e in tried] == ["", "ana\x00"]


# -- accounts from before: kept, found, and their look-alikes taken ---------------------------


def test_an_account_from_before_is_found_by_its_name_and_any_form_of_it(
    app: PlantApplication,
) -> None:
    register_as_before(app, "Dora")
    for typed in ("Dora", "dora", "DORA", "\uff24ora"):
        operator = log_in(app, typed, sid=typed)
        assert (operator.username, operator.id) == ("Dora", operator_id("Dora"))
    assert app.grant_permission(username="dora", scope="plant", actor="admin", at=T0)
    assert app.get_operator("Dora").scopes == ("plant",)
    with pytest.raises(OperatorExists):
        register(app, "dora")


def test_two_accounts_from_before_that_fold_alike_are_each_reached_by_their_exact_name(
    app: PlantApplication,
) -> None:
    register_as_before(app, "Eli")
    register_as_before(app, "ELI")
    assert log_in(app, "Eli", sid="a").id == operator_id("Eli")
    assert log_in(app, "ELI", sid="b").id == operator_id("ELI")
    with pytest.raises(LoginRefused):  # which of the two? neither: the name is ambiguous
        log_in(app, "eli", sid="c")
    assert app.find_operator("eLi") is None
    with pytest.raises(OperatorExists):
        register(app, "eli")
    # The admin can still reach each one, to disable the one that should not exist.
    assert app.disable_operator(username="ELI", reason="duplicate", actor="admin", at=T0)
    assert app.get_operator("Eli").enabled


def test_an_exact_stored_name_wins_over_the_normal_form_of_another_account(
    app: PlantApplication,
) -> None:
    register_as_before(app, "Bob")  # a look-alike of bob made before names were normalised
    assert log_in(app, "Bob").id == operator_id("Bob")
    assert log_in(app, "BOB", sid="s2").id == operator_id("bob")
    assert log_in(app, "bob", sid="s3").id == operator_id("bob")
