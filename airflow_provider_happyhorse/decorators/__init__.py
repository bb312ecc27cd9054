"""TaskFlow decorators: ``@task.happyhorse``."""
