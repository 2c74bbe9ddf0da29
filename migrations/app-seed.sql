-- Applied once to each new tenant `app` database, after its migrations.
insert into accounts (email) values ('owner@example.com');
