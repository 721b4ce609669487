"""The projections service: read models for every tab of the contact page."""
