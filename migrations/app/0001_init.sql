-- The demo fleet's `app` schema (stacks/Pulumi.local.yaml, tenantfleet:schemas). Files here are
-- applied in order to every tenant's `app` database by `pulumi up`; never edit one that has run:
-- add the next (README, "Schema migrations").
create table accounts (
  id         bigint generated always as identity primary key,
  email      text not null unique,
  created_at timestamptz not null default now()
);
create table orders (
  id         bigint generated always as identity primary key,
  account_id bigint not null references accounts,
  amount     numeric(12, 2) not null,
  created_at timestamptz not null default now()
);
