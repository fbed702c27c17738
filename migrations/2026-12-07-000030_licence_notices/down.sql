DROP TABLE licence_notices;
