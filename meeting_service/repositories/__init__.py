"""Repositories: all SQL of the service, one module per aggregate.

Every method takes the connection to run on, so a domain service can compose several
repositories inside one transaction. Queries are parameterised; the only text ever
formatted into SQL is this package's own constant column lists and clauses (hence the
`noqa: S608` markers).
"""
