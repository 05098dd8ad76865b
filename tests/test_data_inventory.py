"""The MD inventory: rows from the `starmd simulate` records, target counts by sequence, README block."""
import json

import pytest

from openmm_starmd.data.inventory import README_BEGIN, README_END, inventory, main, markdown, targets, write_readme


def _system(root, name, residues, replicas, wall_s=86400.0):
    folder = root / name
    folder.mkdir(parents=True)
    lines = [f"ATOM  {i + 1:5d}  CA  {res} A{i + 1:4d}       0.000   0.000   0.000  1.00  0.00           C"
             for i, res in enumerate(residues)]
    (folder / f"{name}.pdb").write_text("\n".join(lines) + "\nEND\n")
    record = {"replicas": {r: {"ns": ns, "wall_s_by_platform": {"CPUx1": wall_s}} for r, ns in replicas.items()}}
    (folder / f"{name}.json").write_text(json.dumps(record))


def test_inventory_counts_proteins_by_sequence_and_longest_replica(tmp_path):
    _system(tmp_path, "a", ["GLY", "TRP", "ALA"], {"R1": 12.0, "R2": 0.3})
    _system(tmp_path, "a_again", ["GLY", "TRP", "ALA"], {"R1": 0.4})  # the same sequence under another name
    _system(tmp_path, "b", ["LYS", "LEU"], {"R1": 0.2, "R2": 0.2})  # 0.4 ns in all
    _system(tmp_path, "v", ["PRO", "PRO", "GLY"], {"R1": 0.9})
    _system(tmp_path, "w", ["PRO", "PRO", "GLY", "ALA"], {"R1": 0.6})  # 3 of 4 identical to PPG: PPG's family
    (tmp_path / "not_a_system").mkdir()
    rows = inventory(tmp_path, split=("v",))
    assert [r["name"] for r in rows] == ["a", "a_again", "b", "v", "w"]
    a = rows[0]
    assert a["sequence"] == "GWA" and a["residues"] == 3 and a["ns"] == {"R1": 12.0, "R2": 0.3}
    assert a["total_ns"] == pytest.approx(12.3) and a["longest_ns"] == 12.0
    assert a["ns_per_day"] == pytest.approx(12.3 / 2)  # two replicas, one day of wall time each
    assert rows[3]["validation"] and not rows[0]["validation"]
    t = targets(rows)
    assert t["proteins"] == 4 and t["proteins_ge_0.5ns"] == 3 and t["proteins_ge_10ns"] == 1  # GWA, PPG, PPGA; GWA
    assert t["families_ge_0.5ns"] == 2  # GWA; PPG with PPGA (75 % identical)
    assert t["training_proteins"] == 3 and t["training_proteins_ge_0.5ns"] == 2
    assert t["total_ns"] == pytest.approx(14.6)
    table = markdown(rows, "2026-01-02")
    assert "on 2026-01-02: 4 proteins" in table and "3 with ≥ 0.5 ns (in 2 families below 70 % identity)" in table and "| a | 3 | R1 12, R2 0.3 | 12.30 | 6 | training |" in table
    assert "| v | 3 | R1 0.9 | 0.90 | 1 | validation |" in table


def test_readme_block_is_replaced_in_place_and_bad_records_are_reported(tmp_path, capsys):
    _system(tmp_path, "a", ["GLY", "TRP"], {"R1": 1.0})
    readme = tmp_path / "README.md"
    readme.write_text("# data\n\nintro\n")
    assert main([str(tmp_path), "--write-readme", "--date", "2026-01-02"]) == 0
    first = readme.read_text()
    assert first.startswith("# data\n\nintro\n\n" + README_BEGIN) and first.rstrip().endswith(README_END)
    readme.write_text(first + "\nafter\n")
    write_readme(readme, "new table\n")
    text = readme.read_text()
    assert text.count(README_BEGIN) == 1 and "new table\n" + README_END in text
    assert text.startswith("# data\n\nintro\n") and text.endswith("after\n") and "| a |" not in text
    (tmp_path / "a" / "a.json").write_text("{broken")
    assert main([str(tmp_path)]) == 2
    assert "not a JSON record" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2


def test_families_group_point_mutants_not_unrelated_sequences():
    from openmm_starmd.data.inventory import families

    gb1 = "MTYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"
    mutant = gb1[:4] + "A" + gb1[5:]  # one point mutation: 98 % identical
    other = "GSSGSSGMEKFLKYLVENGRDLEEAVRLAEEAGRDPESLKKLLEEGSGPSSG"
    assert families([gb1, other, mutant]) == [[0, 2], [1]]
    assert families([gb1, gb1[:20]]) == [[0], [1]]  # a fragment of a third of the length is its own family
    assert families([]) == []
