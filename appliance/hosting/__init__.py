"""Git hosting: the project's repository served over smart HTTP, pushes that start
pipelines, protected branches, merge requests, webhooks from and to other forges, and the
repository browser's reading of git."""
