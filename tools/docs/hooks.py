"""mkdocs hooks of the rewardbench_nb site (named in the mkdocs.yml that tools/build_docs.py writes).

mkdocs-jupyter builds a page's table of contents from a markdown export that drops every code span, so a
heading such as "## The `Run` folder" (or nbdev's linked "## [`main`](...)") is listed under an id the
page does not have. Here the table of contents is read from the same HTML the page is rendered with, so
every entry points at a real heading.
"""
import html, re
import nbformat
import mkdocs_jupyter.plugin as _plugin
import mkdocs_jupyter.convert  # noqa: F401  (installs mkdocs-jupyter's heading ids into nbconvert)
from nbconvert.filters.markdown_mistune import markdown2html_mistune

_re_heading = re.compile(r'<h([1-6])\b[^>]*\bid="([^"]*)"[^>]*>(.*?)</h\1>', re.S)

def _nest(flat:list)->list:
    "Flat heading tokens -> the nested tokens mkdocs' get_toc expects."
    root, stack = [], []
    for t in flat:
        while stack and stack[-1]['level'] >= t['level']: stack.pop()
        (stack[-1]['children'] if stack else root).append(t)
        stack.append(t)
    return root

def toc_tokens(fpath, toc_depth:int):
    "(toc tokens, title) of a notebook page, with the ids its rendered headings carry."
    nb = nbformat.read(fpath, as_version=4)
    flat, title = [], None
    for cell in nb.cells:
        if cell.cell_type != 'markdown': continue
        for level, hid, inner in _re_heading.findall(markdown2html_mistune(cell.source)):
            inner = re.sub(r'<a class="anchor-link"[^>]*>.*?</a>', '', inner, flags=re.S)
            name = html.escape(html.unescape(re.sub(r'<[^>]+>', '', inner)).strip(), quote=False)
            if title is None and level == '1': title = name
            if int(level) <= toc_depth: flat.append({'level': int(level), 'id': hid, 'name': name, 'children': []})
    return _nest(flat), title

_plugin._get_nb_toc_tokens = toc_tokens
