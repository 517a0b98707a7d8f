"""The transport-agnostic core: the service (resolve, validate, admit, record), jobs, the
graph batchers and the step loop, deadlines and heavy-work limits."""
