"""PCI aliases in the engine's configuration ([pci] alias, $PLUGBOARD_PCI_ALIAS) in seed 003's JSON
form, and requests for them in Nova's syntax ("a1:2", "a1:2,b1:1"): every accepted form, every
refusal naming what is wrong."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import ConfigError, load
from engine.pci_aliases import MAX_COUNT, Alias, PciRequest, by_name, format_request, parse_alias, \
    parse_aliases, parse_request

SEED = '{"vendor_id":"8086", "product_id":"10c9", "name":"a1"}'     # seed 003, verbatim
A1 = Alias("a1", "8086", "10c9")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), env={})
    assert e.value.key == "pci.alias" and str(e.value).startswith("pci.alias")
    return e.value


# ---- aliases: accepted forms ---------------------------------------------------------------------

def test_the_seeds_json_text_is_one_alias():
    assert parse_alias(SEED) == A1
    assert parse_aliases(SEED) == (A1,)


@pytest.mark.parametrize("value", [
    [SEED],                                                            # a list of JSON texts
    [json.loads(SEED)],                                                # a list of objects
    json.loads(SEED),                                                  # one object
    f"[{SEED}]",                                                       # the JSON text of a list
])
def test_a_list_an_object_or_their_json_text(value):
    assert parse_aliases(value) == (A1,)


def test_ids_are_kept_in_lower_case():
    assert parse_alias({"name": "gpu", "vendor_id": "10DE", "product_id": "1EB8"}) == Alias("gpu", "10de", "1eb8")


def test_no_alias_at_all():
    assert parse_aliases([]) == parse_aliases("[]") == ()


def test_one_name_twice_with_other_ids_means_any_of_them():
    aliases = parse_aliases([SEED, '{"vendor_id": "8086", "product_id": "10d3", "name": "a1"}',
                             '{"vendor_id": "15b3", "product_id": "1017", "name": "b1"}'])
    assert by_name(aliases) == {"a1": [("8086", "10c9"), ("8086", "10d3")], "b1": [("15b3", "1017")]}


def test_config_file_list_of_json_texts(tmp_path):
    cfg = load(write(tmp_path, f"[pci]\nalias = ['{SEED}']\n"), env={})
    assert cfg.pci_aliases == (A1,)


def test_config_file_list_of_tables(tmp_path):
    cfg = load(write(tmp_path, '[[pci.alias]]\nname = "a1"\nvendor_id = "8086"\nproduct_id = "10c9"\n'
                               '[[pci.alias]]\nname = "a1"\nvendor_id = "8086"\nproduct_id = "10d3"\n'), env={})
    assert cfg.pci_aliases == (A1, Alias("a1", "8086", "10d3"))


def test_config_env_takes_the_seeds_text_and_overrides_the_file(tmp_path):
    path = write(tmp_path, '[pci]\nalias = [\'{"vendor_id": "15b3", "product_id": "1017", "name": "b1"}\']\n')
    assert load(path, env={"PLUGBOARD_PCI_ALIAS": SEED}).pci_aliases == (A1,)
    assert load(env={"PLUGBOARD_PCI_ALIAS": f"[{SEED}]"}).pci_aliases == (A1,)


def test_no_aliases_by_default():
    assert load(env={}).pci_aliases == ()


# ---- aliases: refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ('[pci]\nalias = [\'{"vendor_id": "8086", "product_id": "10c9", "name": "a 1"}\']\n', "alias name 'a 1'"),
    ('[pci]\nalias = [\'{"vendor_id": "8086", "product_id": "10c9", "name": ""}\']\n', "alias name ''"),
    ('[pci]\nalias = [\'{"vendor_id": "8086", "product_id": "10c9", "name": "a1:2"}\']\n', "alias name 'a1:2'"),
    ('[pci]\nalias = [\'{"vendor_id": "8086", "product_id": "10c9"}\']\n', "alias name None"),
    ('[pci]\nalias = [\'{"vendor_id": "808", "product_id": "10c9", "name": "a1"}\']\n', "vendor_id '808'"),
    ('[pci]\nalias = [\'{"vendor_id": "0x8086", "product_id": "10c9", "name": "a1"}\']\n', "vendor_id '0x8086'"),
    ('[pci]\nalias = [\'{"vendor_id": "80g6", "product_id": "10c9", "name": "a1"}\']\n', "vendor_id '80g6'"),
    ('[pci]\nalias = [\'{"vendor_id": 8086, "product_id": "10c9", "name": "a1"}\']\n', "vendor_id 8086"),
    ('[pci]\nalias = [\'{"vendor_id": "8086", "name": "a1"}\']\n', "product_id None"),
    ('[pci]\nalias = [\'{"vendor_id": "8086", "product_id": "10c9", "name": "a1", "device_type": "type-PF"}\']\n',
     "unknown field device_type"),
    ('[pci]\nalias = [\'{"vendor_id": "8086", "product_id": "10c9", "name": "a1"\']\n', "is not JSON"),
    ('[pci]\nalias = ["a1"]\n', "is not JSON"),
    ('[pci]\nalias = [5]\n', "5 is not an object"),
    ('[pci]\nalias = 5\n', "5 is not an object"),
    (f"[pci]\nalias = ['{SEED}', '{SEED}']\n", "alias a1 (8086:10c9) is given twice"),
    ('[[pci.alias]]\nname = "a1"\nvendor_id = "8086"\nproduct_id = "10c9"\n'
     '[[pci.alias]]\nname = "a1"\nvendor_id = "8086"\nproduct_id = "10C9"\n', "given twice"),   # same, once lowered
])
def test_a_bad_alias_is_refused_naming_pci_alias(tmp_path, text, words):
    assert words in str(config_error(tmp_path, text))


def test_a_bad_alias_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as e:
        load(env={"PLUGBOARD_PCI_ALIAS": '{"vendor_id": "8086", "product_id": "10c", "name": "a1"}'})
    assert e.value.key == "pci.alias"
    assert "$PLUGBOARD_PCI_ALIAS" in str(e.value) and "product_id '10c'" in str(e.value)


@pytest.mark.parametrize("entry", [
    {"name": "a1\n", "vendor_id": "8086", "product_id": "10c9"},
    {"name": "a1", "vendor_id": "8086\n", "product_id": "10c9"},
    {"name": "a1", "vendor_id": "8086", "product_id": "10c9\n"},
])
def test_a_final_newline_is_not_part_of_a_name_or_an_id(entry):
    with pytest.raises(ValueError):
        parse_alias(entry)


# ---- requests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, wanted", [
    ("a1:2", [PciRequest("a1", 2)]),
    ("a1:2,b1:1", [PciRequest("a1", 2), PciRequest("b1", 1)]),
    ("a1", [PciRequest("a1", 1)]),                                     # a bare name is one device
    ("a1, b1:3", [PciRequest("a1", 1), PciRequest("b1", 3)]),
    (f"a1:{MAX_COUNT}", [PciRequest("a1", MAX_COUNT)]),
    ("a1:8,b1:8", [PciRequest("a1", 8), PciRequest("b1", 8)]),          # 16 in all
])
def test_requests(text, wanted):
    assert parse_request(text, ["a1", "b1"]) == (tuple(wanted), [])


def test_a_request_written_back_reads_the_same():
    requests, _ = parse_request("a1,b1:3")
    assert format_request(requests) == "a1:1,b1:3"
    assert parse_request(format_request(requests))[0] == requests


@pytest.mark.parametrize("text, problem", [
    ("a1:0", "'a1:0': the count must be a whole number from 1 to 16"),
    ("a1:17", "'a1:17': the count must be a whole number from 1 to 16"),
    ("a1:-1", "'a1:-1': the count must be"),
    ("a1:two", "'a1:two': the count must be"),
    ("a1:1.5", "'a1:1.5': the count must be"),
    ("a1:²", "'a1:²': the count must be"),                              # a digit to isdigit(), not to int()
    ("a1:١", "'a1:١': the count must be"),
    ("a1:", "'a1:': the count must be"),
    ("a1:2:3", "'a1:2:3': the count must be"),
    ("a1:10,b1:7", "17 devices in all; at most 16"),
    ("a1:1,a1:2", "alias a1 is asked for twice"),
    (":2", "':2' does not start with an alias name"),
    ("a1:2,", "'' does not start with an alias name"),
    ("a 1:2", "'a 1:2' does not start with an alias name"),
    ("", "'' is not a request"),
    ("  ", "'  ' is not a request"),
    (None, "None is not a request"),
    (2, "2 is not a request"),
])
def test_bad_requests(text, problem):
    requests, problems = parse_request(text, ["a1", "b1"])
    assert requests == ()
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_every_problem_is_named():
    assert parse_request("a1:0,c1:2,a 2", ["a1", "b1"]) == ((), [
        "'a1:0': the count must be a whole number from 1 to 16",
        "alias c1 is not configured (configured: a1, b1)",
        "'a 2' does not start with an alias name"])


def test_unknown_alias_names_it_and_what_is_configured():
    assert parse_request("x9:1", []) == ((), ["alias x9 is not configured (configured: none)"])
    assert parse_request("x9:1") == ((PciRequest("x9", 1),), [])        # names not checked
