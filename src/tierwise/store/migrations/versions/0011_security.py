"""Security: the outbox keeps receivers' replies apart from errors (shown to admins only);
jobs record the process that runs them and their upload, so that a crash is recovered.

Revision ID: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("last_reply", sa.Text))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("runner", sa.String(300)))
        batch.add_column(sa.Column("upload_folder", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("upload_folder")
        batch.drop_column("runner")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("last_reply")
