"""The HTML report of `workbench reproduce`: claims with verdicts, tables with n and CIs, figures.

`workbench.report.claims` computes a verdict per paper claim; `workbench.report.html` writes
`results/report.html`; `workbench.report.anchors` reads the papers' own numbers.
"""
