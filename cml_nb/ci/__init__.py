"""What CI systems read besides the report comment.

- :mod:`cml_nb.ci.summary`: the GitHub Actions job summary (``GITHUB_STEP_SUMMARY``);
- :mod:`cml_nb.ci.junit`: JUnit XML, one test case per executed code cell;
- :mod:`cml_nb.ci.annotations`: ``::error``/``::warning`` workflow commands in GitHub
  Actions, the same lines as plain log in GitLab CI;
- :mod:`cml_nb.ci.outputs`: step outputs (``GITHUB_OUTPUT``) for the composite action;
- :mod:`cml_nb.ci.changes`: the report's "Changes" section for ``--compare-to``.

The CLI calls these after each stage returns its typed result (RunRecord, Report,
PublishResult); no stage imports them.
"""
