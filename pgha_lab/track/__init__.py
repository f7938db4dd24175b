"""The hand-build track (`pgha-lab track`): the course's build in seven steps on a bare lab, each with
its words, hints and a check that grades the learner's own nodes like a human grader; the reference
solution is the exported playbook's tag for the step."""
