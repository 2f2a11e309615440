"""Chinese text: the punctuation sentence splitter, OpenCC t2s, and presplit choosing them per corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gpt2core.data.presplit import presplit_shard
from gpt2core.data.zh import is_chinese, split_sentences_zh, to_simplified


def test_splits_at_every_end_mark_and_keeps_closing_quotes():
    text = "他说：“好。”然后走了。真的吗？是的！先这样；再那样……最后「结束了！」还有（括号。）尾巴"
    assert split_sentences_zh(text).split("\n") == [
        "他说：“好。”", "然后走了。", "真的吗？", "是的！", "先这样；", "再那样……", "最后「结束了！」",
        "还有（括号。）", "尾巴"]


def test_runs_of_end_marks_stay_together_and_nothing_is_inserted():
    text = "真的吗？！当然。。。好吧……"
    out = split_sentences_zh(text)
    assert out.split("\n") == ["真的吗？！", "当然。。。", "好吧……"]
    assert out.replace("\n", "") == text  # only line breaks added: no spaces, punctuation kept full-width


def test_paragraphs_become_lines_and_edge_spaces_go():
    text = "  第一段。第二句\n\n\u3000\u3000第二段开头，没有结束\n"
    assert split_sentences_zh(text) == "第一段。\n第二句\n第二段开头，没有结束"


def test_mixed_latin_text_is_left_alone():
    assert split_sentences_zh("GPT-2 模型。It has 124M parameters. 很好！") == \
        "GPT-2 模型。\nIt has 124M parameters. 很好！"


def test_is_chinese_languages():
    assert all(map(is_chinese, ["zh", "zh-hans", "zh-TW", "zh_yue", "ZH"]))
    assert not any(map(is_chinese, ["en", "ja", "zhx"]))


def test_t2s_converts_traditional_and_keeps_simplified_and_latin():
    assert to_simplified("臺灣的圖書館與電腦") == "台湾的图书馆与电脑"
    assert to_simplified("简体字不变，ASCII stays.") == "简体字不变，ASCII stays."


def _write(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")


@pytest.mark.parametrize("lang, t2s, expect", [
    ("zh", True, "图书馆很安静。\n“请小声说话。”\n大家都同意"),
    ("zh", False, "圖書館很安靜。\n“請小聲說話。”\n大家都同意"),
])
def test_presplit_uses_the_chinese_splitter_and_converts_only_when_asked(tmp_path, lang, t2s, expect):
    _write(tmp_path / "p/AA/wiki_00", [{"id": "1", "title": "圖書館", "url": "",
                                        "text": "圖書館很安靜。“請小聲說話。”大家都同意"}])
    out = tmp_path / "s.parquet"
    presplit_shard([("p", tmp_path / "p")], out, 0, 1, True, 0, [], lang, t2s)
    row = pq.read_table(out).to_pylist()[0]
    assert row["text"] == expect
    assert row["title"] == ("图书馆" if t2s else "圖書館")


def test_english_corpus_keeps_blingfire(tmp_path):
    _write(tmp_path / "p/AA/wiki_00", [{"id": "1", "title": "T", "url": "", "text": "One here. Two there."}])
    presplit_shard([("p", tmp_path / "p")], tmp_path / "s.parquet", 0, 1, True, 0, [], "en", False)
    assert pq.read_table(tmp_path / "s.parquet").to_pylist()[0]["text"] == "One here.\nTwo there."
