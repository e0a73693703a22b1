"""The bundled references (``data/citations.yaml``): one structured entry per key, as text or as BibTeX."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class Reference:
    key: str
    authors: str  # "Friston KJ, Williams S, ..." as printed; may end in "et al."
    year: int
    title: str
    journal: str
    volume: str
    pages: str

    @property
    def text(self) -> str:
        """``Authors (Year). Title. Journal Volume:Pages.``"""
        return f"{self.authors} ({self.year}). {self.title}. {self.journal} {self.volume}:{self.pages}."

    @property
    def short(self) -> str:
        """``Friston et al. 1996``, ``Ledoit & Wolf 2004``, ``Zang 2004``-style in-text citation."""
        names = [a.strip() for a in self.authors.split(",") if a.strip() and a.strip() != "et al."]
        surnames = [name.rsplit(" ", 1)[0] if " " in name else name for name in names]
        if len(surnames) == 1 and not self.authors.endswith("et al."):
            return f"{surnames[0]} {self.year}"
        if len(surnames) == 2 and not self.authors.endswith("et al."):
            return f"{surnames[0]} & {surnames[1]} {self.year}"
        return f"{surnames[0]} et al. {self.year}"

    @property
    def bibtex(self) -> str:
        """A BibTeX ``@article`` (authors as "Surname, Initials" joined by "and"; "et al." becomes "others")."""
        authors = []
        for name in (a.strip() for a in self.authors.split(",")):
            if name == "et al.":
                authors.append("others")
            elif name:
                surname, _, initials = name.rpartition(" ")
                authors.append(f"{surname}, {initials}" if surname else initials)
        fields = {
            "author": " and ".join(authors),
            "title": "{" + self.title + "}",  # keep the capitalisation (fMRI, CompCor, ...)
            "journal": self.journal,
            "year": str(self.year),
            "volume": self.volume,
            "pages": re.sub(r"(?<=\w)-(?=\w)", "--", self.pages),
        }
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields.items())
        return f"@article{{{self.key},\n{body}\n}}"


@cache
def load_references() -> dict[str, Reference]:
    """Every bundled reference by key, in file order."""
    text = resources.files("clbp_bidsapp.data").joinpath("citations.yaml").read_text(encoding="utf-8")
    references = {}
    for key, entry in yaml.safe_load(text).items():
        fields = {name: str(entry[name]) for name in ("authors", "title", "journal", "volume", "pages")}
        references[key] = Reference(key=key, year=int(entry["year"]), **fields)
    return references
