"""The results of a run: terminal summary, JUnit XML and the HTML report (templates/)."""
